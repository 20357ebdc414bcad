#!/usr/bin/env bash
# Server copy throughput against two throwaway Dovecots (IMAP -> IMAP, IMAP -> maildir):
# first-copy msgs/s and MB/s, rerun time, peak RSS.
#   scripts/bench-imap.sh [MESSAGES] [ATTACHMENT_KB]
# Defaults: 5000 messages, one in 20 with a 512 KiB attachment (~180 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
CUTOVER_BENCH_MSGS="${1:-5000}" CUTOVER_BENCH_ATTACH_KB="${2:-512}" \
  cargo bench --bench imap
