#!/usr/bin/env bash
# PST → maildir speed and peak RSS beside readpst, and the memory-flatness check.
# Usage: scripts/bench-pst.sh [REPEAT] [BULK_MESSAGES]
#        scripts/bench-pst.sh big [MESSAGES] [ATTACHMENT_KB]
# big: 24 mails with 22 MiB attachments, `cutover apply` PST -> maildir beside readpst: wall
# time and peak RSS of both.
# Uses the real fixtures when CUTOVER_REAL_FIXTURES is set (or ../shared/fixtures/real exists).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v readpst >/dev/null || { echo "readpst is missing: apt-get install pst-utils" >&2; exit 1; }
if [ -z "${CUTOVER_REAL_FIXTURES:-}" ] && [ -d ../shared/fixtures/real ]; then
  export CUTOVER_REAL_FIXTURES="$(cd ../shared/fixtures/real && pwd)"
fi
if [ "${1:-}" = big ]; then
  BENCH_PST_SCENARIO=big BENCH_PST_MESSAGES="${2:-24}" BENCH_PST_ATTACH_KB="${3:-22528}" \
    exec cargo bench --bench pst
fi
export BENCH_PST_REPEAT="${1:-10}" BENCH_PST_MESSAGES="${2:-2000}"
exec cargo bench --bench pst
