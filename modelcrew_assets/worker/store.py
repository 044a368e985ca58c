"""Reading and writing the studio's storage from the worker: `s3://bucket/prefix` or `file://path`.

The Dagster side uses StorageResource; the worker cannot import it (it runs in kohya's environment with
boto3 and dagster-pipes only), so this is the same key layout and the same sha256 object metadata in a
few lines.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import boto3

SHA256_METADATA = "sha256"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class WorkerStore:
    def __init__(self, url: str):
        self.url = url
        if url.startswith("s3://"):
            bucket, _, prefix = url[len("s3://") :].partition("/")
            self.bucket = bucket
            self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
            self.client = boto3.client("s3", region_name=os.environ.get("AWS_REGION") or None)
            self.root = None
        elif url.startswith("file://"):
            self.root = Path(url[len("file://") :] or ".").resolve()
            self.client = None
        else:
            raise ValueError(f"storage url {url!r} is not supported; use s3://bucket/prefix or file://path")

    def download(self, key: str, destination: Path) -> None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        if self.client is not None:
            self.client.download_file(self.bucket, self.prefix + key, str(destination))
        else:
            shutil.copyfile(self.root / key, destination)

    def upload(self, path: Path, key: str, content_type: str) -> tuple[str, int]:
        """Upload a finished file; returns (sha256, size). Local writes are atomic like StorageResource's."""
        digest, size = file_sha256(path), path.stat().st_size
        if self.client is not None:
            self.client.upload_file(
                str(path),
                self.bucket,
                self.prefix + key,
                ExtraArgs={"Metadata": {SHA256_METADATA: digest}, "ContentType": content_type},
            )
        else:
            target = self.root / key
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.parent / f".tmp-{target.name}"
            shutil.copyfile(path, temporary)
            os.replace(temporary, target)
        return digest, size

    def read_bytes(self, key: str) -> bytes:
        if self.client is not None:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        return (self.root / key).read_bytes()

    def stored_sha256(self, key: str) -> str | None:
        """The sha256 of what is stored at key, or None when nothing is (a write-once check before upload)."""
        if self.client is None:
            path = self.root / key
            return file_sha256(path) if path.is_file() else None
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except self.client.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        # An object without our metadata was not written by us: treat it as different content.
        return head.get("Metadata", {}).get(SHA256_METADATA, "")

    def list_keys(self, prefix: str) -> list[str]:
        if self.client is not None:
            keys = []
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                keys.extend(item["Key"][len(self.prefix) :] for item in page.get("Contents", []))
            return sorted(keys)
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        return sorted(
            path.relative_to(self.root).as_posix()
            for path in folder.rglob("*")
            if path.is_file() and not path.name.startswith(".tmp-")
        )
