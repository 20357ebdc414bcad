#!/usr/bin/env bash
# Exchange Online's per-mailbox throttle budget, played by a Dovecot behind the fault proxy's
# Exchange profile: four mailboxes at once; wall time beside the ideal, budget used, APPENDs
# refused — finding the budget, then told it.
#   scripts/bench-exchange.sh [MESSAGES_PER_MAILBOX] [BUDGET_PER_SECOND]
set -euo pipefail
cd "$(dirname "$0")/.."
CUTOVER_BENCH_EXO_MSGS="${1:-300}" CUTOVER_BENCH_EXO_RATE="${2:-20}" \
  cargo bench --bench exchange
