"""The two places bytes can live: a local folder and an S3 bucket, behind one small interface."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

SHA256_METADATA = "sha256"


@dataclass(frozen=True)
class StoredObject:
    """One object as a listing sees it. `etag` changes whenever the content may have changed."""

    key: str
    size: int
    etag: str
    modified: datetime


class StorageNotReachableError(RuntimeError):
    """The storage cannot give an outside service a URL to fetch from."""


class StorageBackend(Protocol):
    def put(self, key: str, data: bytes, sha256: str, content_type: str | None) -> None: ...
    def get(self, key: str) -> bytes: ...
    def head(self, key: str) -> StoredObject | None: ...
    def stored_sha256(self, key: str) -> str | None: ...
    def list(self, prefix: str) -> Iterator[StoredObject]: ...
    def presign(self, key: str, expires_in: int) -> str: ...
    def uri(self, key: str) -> str: ...


class LocalBackend:
    """A folder on disk; writes are atomic (temp file + rename) so readers never see half a file."""

    def __init__(self, root: Path):
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        return self.root / key

    def put(self, key: str, data: bytes, sha256: str, content_type: str | None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(key) from None

    def head(self, key: str) -> StoredObject | None:
        path = self._path(key)
        if not path.is_file():
            return None
        return self._stat(key, path)

    def stored_sha256(self, key: str) -> str | None:
        return None

    @staticmethod
    def _stat(key: str, path: Path) -> StoredObject:
        stat = path.stat()
        return StoredObject(
            key=key,
            size=stat.st_size,
            etag=f"{stat.st_size}-{stat.st_mtime_ns}",
            modified=datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc),
        )

    def list(self, prefix: str) -> Iterator[StoredObject]:
        # Walk only the deepest folder the prefix names; filter the rest by string prefix like S3 does.
        folder = self._path(prefix.rpartition("/")[0]) if "/" in prefix else self.root
        if not folder.is_dir():
            return
        found = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".tmp-")]
            for name in filenames:
                if name.startswith(".tmp-"):
                    continue
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append((key, path))
        for key, path in sorted(found):
            yield self._stat(key, path)

    def presign(self, key: str, expires_in: int) -> str:
        raise StorageNotReachableError(
            f"cannot give an outside service a URL for {key!r}: local storage ({self.root}) is not "
            "reachable from the internet; set MODELCREW_STORAGE_URL=s3://bucket/prefix for live runs"
        )

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()


class S3Backend:
    """A private S3 bucket (or any S3-compatible store: boto3 honours AWS_ENDPOINT_URL_S3)."""

    def __init__(self, bucket: str, prefix: str, region: str | None, endpoint_url: str | None):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = boto3.client(
            "s3",
            region_name=region,
            endpoint_url=endpoint_url or None,
            config=Config(retries={"max_attempts": 8, "mode": "adaptive"}, signature_version="s3v4"),
        )

    def _full(self, key: str) -> str:
        return self.prefix + key

    def put(self, key: str, data: bytes, sha256: str, content_type: str | None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        self.client.put_object(
            Bucket=self.bucket, Key=self._full(key), Body=data, Metadata={SHA256_METADATA: sha256}, **extra
        )

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"].read()
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise KeyError(key) from None
            raise

    def _head(self, key: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as error:
            if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def head(self, key: str) -> StoredObject | None:
        answer = self._head(key)
        if answer is None:
            return None
        return StoredObject(key, answer["ContentLength"], answer["ETag"].strip('"'), answer["LastModified"])

    def stored_sha256(self, key: str) -> str | None:
        answer = self._head(key)
        return None if answer is None else answer.get("Metadata", {}).get(SHA256_METADATA)

    def list(self, prefix: str) -> Iterator[StoredObject]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._full(prefix)):
            for item in page.get("Contents", []):
                yield StoredObject(
                    key=item["Key"][len(self.prefix) :],
                    size=item["Size"],
                    etag=item["ETag"].strip('"'),
                    modified=item["LastModified"],
                )

    def presign(self, key: str, expires_in: int) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._full(key)}, ExpiresIn=expires_in
        )

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
