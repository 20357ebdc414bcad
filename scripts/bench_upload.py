#!/usr/bin/env python3
"""The Python side of scripts/bench-upload.sh: Microsoft's azure-storage-blob SDK uploads one
file to the container SAS URL in $BENCH_SAS, with the SDK's defaults (4 MiB blocks) and
max_concurrency as given, and prints {"seconds": ...} as JSON. With a fourth argument `md5`
it passes validate_content=True: the SDK then sends each block's MD5 (one MD5 pass over the
file, as cutover's Content-MD5 of the whole file costs).

    BENCH_SAS=<container SAS URL> bench_upload.py FILE BLOB CONCURRENCY [md5]
"""
import json
import os
import sys
import time

from azure.storage.blob import BlobClient


def main() -> None:
    path, blob, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    validate = len(sys.argv) > 4 and sys.argv[4] == "md5"
    container_url, query = os.environ["BENCH_SAS"].split("?", 1)
    client = BlobClient.from_blob_url(f"{container_url}/{blob}?{query}")
    start = time.monotonic()
    with open(path, "rb") as data:
        client.upload_blob(
            data, overwrite=True, max_concurrency=concurrency, validate_content=validate
        )
    print(json.dumps({"seconds": time.monotonic() - start}))


if __name__ == "__main__":
    main()
