"""The two places bytes can live: a local folder and an S3 bucket, behind one small interface.

No Dagster here: ObjectStore (modelcrew_assets/object_store.py) builds on these for the orchestrator and the
GPU worker alike.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
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
    def put_if_absent(self, key: str, data: bytes, sha256: str, content_type: str | None) -> bool: ...
    def put_file(self, key: str, path: Path, sha256: str, content_type: str | None) -> None: ...
    def download(self, key: str, destination: Path) -> None: ...
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
        with self._temporary(key, lambda handle: handle.write(data)) as (tmp, path):
            os.replace(tmp, path)

    def put_if_absent(self, key: str, data: bytes, sha256: str, content_type: str | None) -> bool:
        # A hard link fails when the name is taken, so of two racing writers exactly one wins, and the
        # file appears whole because it was written under its temporary name first.
        with self._temporary(key, lambda handle: handle.write(data)) as (tmp, path):
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            return True

    def put_file(self, key: str, path: Path, sha256: str, content_type: str | None) -> None:
        with path.open("rb") as source:
            with self._temporary(key, lambda handle: shutil.copyfileobj(source, handle, 1 << 20)) as (tmp, target):
                os.replace(tmp, target)

    @contextmanager
    def _temporary(self, key: str, write) -> Iterator[tuple[str, Path]]:
        """A temporary file beside the key's path, written by `write` and always removed afterwards."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                write(handle)
            yield tmp, path
        finally:
            Path(tmp).unlink(missing_ok=True)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(key) from None

    def download(self, key: str, destination: Path) -> None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(self._path(key), destination)
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(key) from None

    def head(self, key: str) -> StoredObject | None:
        path = self._path(key)
        if not path.is_file():
            return None
        return self._stat(key, path)

    def stored_sha256(self, key: str) -> str | None:
        path = self._path(key)
        return file_sha256(path) if path.is_file() else None

    @staticmethod
    def _stat(key: str, path: Path) -> StoredObject:
        stat = path.stat()
        return StoredObject(
            key=key,
            size=stat.st_size,
            etag=f"{stat.st_size}-{stat.st_mtime_ns}",
            modified=datetime.fromtimestamp(stat.st_mtime, tz=UTC),
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
        self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data, **_put_args(sha256, content_type))

    def put_if_absent(self, key: str, data: bytes, sha256: str, content_type: str | None) -> bool:
        """S3's conditional write: 412 when the key exists; 409 while another conditional write to it is in
        flight, which S3 asks callers to retry."""
        conflicts = 0
        while True:
            try:
                self.client.put_object(
                    Bucket=self.bucket, Key=self._full(key), Body=data, IfNoneMatch="*",
                    **_put_args(sha256, content_type),
                )  # fmt: skip
                return True
            except ClientError as error:
                code = error.response["Error"]["Code"]
                if code in ("PreconditionFailed", "412"):
                    return False
                conflicts += 1
                if code not in ("ConditionalRequestConflict", "409") or conflicts >= _CONFLICT_RETRIES:
                    raise

    def put_file(self, key: str, path: Path, sha256: str, content_type: str | None) -> None:
        # boto3's managed transfer: multipart for large files (checkpoints), retried per part.
        self.client.upload_file(str(path), self.bucket, self._full(key), ExtraArgs=_put_args(sha256, content_type))

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"].read()
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise KeyError(key) from None
            raise

    def download(self, key: str, destination: Path) -> None:
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(self.bucket, self._full(key), str(destination))
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


_CONFLICT_RETRIES = 3


def _put_args(sha256: str, content_type: str | None) -> dict:
    extra = {"ContentType": content_type} if content_type else {}
    return {"Metadata": {SHA256_METADATA: sha256}, **extra}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
