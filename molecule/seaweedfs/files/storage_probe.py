"""Save or read one file through Django's default storage configured like the app's (django-storages S3).

Usage: storage_probe.py save NAME CONTENT | read NAME | get NAME. `read` opens the file the way
Django does (a HEAD, then a GET); `get` is a plain GET on the storage's bucket, whose error reply
carries the S3 error code (a HEAD reply has no body, only a status). Settings come from the environment
(S3_ENDPOINT, S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION). Prints the stored name or the
content; on an S3 error prints its code to stderr and exits 2.
"""

import os
import sys

import django
from django.conf import settings

settings.configure(
    STORAGES={
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "endpoint_url": os.environ["S3_ENDPOINT"],
                "bucket_name": os.environ["S3_BUCKET"],
                "access_key": os.environ["S3_ACCESS_KEY"],
                "secret_key": os.environ["S3_SECRET_KEY"],
                "region_name": os.environ.get("S3_REGION", "us-east-1"),
                "addressing_style": "path",
                "file_overwrite": False,
            },
        },
    },
)
django.setup()

from botocore.exceptions import ClientError  # noqa: E402
from django.core.files.base import ContentFile  # noqa: E402
from django.core.files.storage import default_storage  # noqa: E402


def main(argv: list[str]) -> int:
    try:
        if argv[0] == "save":
            print(default_storage.save(argv[1], ContentFile(argv[2].encode())))
        elif argv[0] == "get":
            sys.stdout.write(default_storage.bucket.Object(argv[1]).get()["Body"].read().decode())
        else:
            with default_storage.open(argv[1]) as handle:
                sys.stdout.write(handle.read().decode())
    except ClientError as error:
        print(error.response["Error"]["Code"], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
