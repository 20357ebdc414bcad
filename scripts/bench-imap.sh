#!/usr/bin/env bash
# Server copy throughput against two throwaway Dovecots (IMAP -> IMAP, IMAP -> maildir):
# first-copy msgs/s and MB/s, rerun time, peak RSS.
#   scripts/bench-imap.sh [MESSAGES] [ATTACHMENT_KB]
# Defaults: 5000 messages, one in 20 with a 512 KiB attachment (~180 MB).
#   scripts/bench-imap.sh big [MESSAGES] [ATTACHMENT_KB]
# Big attachments beside mbsync: 24 messages of ~32 MB (22 MiB attachments) in four folders,
# wall time and peak RSS of both and their ratios (CUTOVER_BENCH_BUDGET_MB to vary the budget).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = big ]; then
  command -v mbsync >/dev/null || { echo "the big scenario runs mbsync beside cutover: apt-get install isync" >&2; exit 1; }
  CUTOVER_BENCH_SCENARIO=big CUTOVER_BENCH_MSGS="${2:-24}" CUTOVER_BENCH_ATTACH_KB="${3:-22528}" \
    cargo bench --bench imap
  exit
fi
CUTOVER_BENCH_MSGS="${1:-5000}" CUTOVER_BENCH_ATTACH_KB="${2:-512}" \
  cargo bench --bench imap
