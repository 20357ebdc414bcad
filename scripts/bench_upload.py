#!/usr/bin/env python3
"""The Python side of scripts/bench-upload.sh: Microsoft's azure-storage-blob SDK uploads one
file to the container SAS URL in $BENCH_SAS, with the SDK's defaults (4 MiB blocks) and
max_concurrency as given, and prints {"seconds": ...} as JSON.

    BENCH_SAS=<container SAS URL> bench_upload.py FILE BLOB CONCURRENCY
"""
import json
import os
import sys
import time

from azure.storage.blob import BlobClient


def main() -> None:
    path, blob, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    container_url, query = os.environ["BENCH_SAS"].split("?", 1)
    client = BlobClient.from_blob_url(f"{container_url}/{blob}?{query}")
    start = time.monotonic()
    with open(path, "rb") as data:
        client.upload_blob(data, overwrite=True, max_concurrency=concurrency)
    print(json.dumps({"seconds": time.monotonic() - start}))


if __name__ == "__main__":
    main()
