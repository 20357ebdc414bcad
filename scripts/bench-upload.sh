#!/usr/bin/env bash
# PST upload against a throwaway Azurite: `cutover pst upload` at a few concurrencies beside
# Microsoft's Python SDK (azure-storage-blob) in the same run — MiB/s and peak RSS — and the
# bytes each sends twice after being killed half way.
#   scripts/bench-upload.sh [MIB] [CONCURRENCIES]
# Defaults: 1024 MiB, concurrencies 1,2,4,8. Needs azurite (npm install -g azurite) and
# python3 with venv; the Python SDK goes into a venv under /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v azurite-blob >/dev/null || { echo "azurite is not installed: npm install -g azurite" >&2; exit 1; }
venv="${CUTOVER_BENCH_VENV:-/tmp/cutover-bench-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import azure.storage.blob' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q azure-storage-blob
fi
echo "Python SDK: azure-storage-blob $("$venv/bin/python" -c 'import azure.storage.blob as b; print(b.__version__)')"
CUTOVER_BENCH_VENV="$venv" CUTOVER_BENCH_UPLOAD_MIB="${1:-1024}" CUTOVER_BENCH_CONCURRENCY="${2:-1,2,4,8}" \
  cargo bench --bench upload
