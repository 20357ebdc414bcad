#!/usr/bin/env bash
# The long kill test: 100 SIGKILLs at random instants of `cutover apply` over a 2,000-message
# corpus, then resume; checks every message is at the target exactly once, byte-identical,
# with its flags, and that state says done. Prints the figures.
#   scripts/kill-bench.sh [ROUNDS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-100}"
seed="${2:-12648430}"
CUTOVER_KILL_ROUNDS="$rounds" CUTOVER_KILL_SEED="$seed" \
  cargo test --release --test kill_resume -- --nocapture 2>&1 | grep -E '^kill test|test result|panicked|FAILED'
