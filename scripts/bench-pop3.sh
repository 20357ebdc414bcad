#!/usr/bin/env bash
# POP3 against IMAP for the same mailbox (one INBOX of 1-6 KB messages) into an IMAP target,
# on loopback and through a delay proxy: msgs/s of each and the POP3/IMAP ratio.
#   scripts/bench-pop3.sh [MESSAGES] [ROUND_TRIP_MS]
# Defaults: 3000 messages, 20 ms round trip.
set -euo pipefail
cd "$(dirname "$0")/.."
CUTOVER_BENCH_MSGS="${1:-3000}" CUTOVER_BENCH_RTT_MS="${2:-20}" \
  cargo bench --bench pop3
