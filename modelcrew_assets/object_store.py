"""ObjectStore: where uploads and every stage's files live, `file://<path>` or `s3://bucket/prefix`, with no
Dagster in it, so the orchestrator (through StorageResource) and the GPU worker share one implementation.

`Storage` is the interface pure modules (handoffs, ledgers, the export stage) take: ObjectStore and
StorageResource both satisfy it, so their callers pass either.

There is deliberately no delete: nothing a user uploaded or paid for is ever removed by the platform.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modelcrew_assets.resources.storage_backends import (
    LocalBackend,
    S3Backend,
    StorageBackend,
    StoredObject,
    file_sha256,
    sha256_hex,
)
from modelcrew_assets.storage_keys import validate_key

DEFAULT_PRESIGN_EXPIRY_SECONDS = 3600

__all__ = ["ObjectStore", "PutResult", "Storage", "StoredObject", "file_sha256"]


@dataclass(frozen=True)
class PutResult:
    key: str
    sha256: str
    size: int
    uri: str


class Storage(Protocol):
    """What stage logic needs of storage."""

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> PutResult: ...
    def get_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def head(self, key: str) -> StoredObject | None: ...
    def list(self, prefix: str) -> Iterator[StoredObject]: ...
    def content_sha256(self, key: str) -> str: ...
    def uri(self, key: str) -> str: ...


class ObjectStore:
    """Keys are validated on every call; writes record the content's sha256 (S3 object metadata)."""

    def __init__(self, url: str, backend: StorageBackend, presign_expiry_seconds: int = DEFAULT_PRESIGN_EXPIRY_SECONDS):
        self.url = url
        self.backend = backend
        self.presign_expiry_seconds = presign_expiry_seconds

    @classmethod
    def from_url(
        cls,
        url: str,
        region: str | None = None,
        endpoint_url: str | None = None,
        presign_expiry_seconds: int = DEFAULT_PRESIGN_EXPIRY_SECONDS,
    ) -> ObjectStore:
        """`file://path` or `s3://bucket/prefix`; S3 honours AWS_ENDPOINT_URL_S3 when no endpoint is given."""
        if url.startswith("file://"):
            return cls(url, LocalBackend(Path(url[len("file://") :] or ".")), presign_expiry_seconds)
        if url.startswith("s3://"):
            bucket, _, prefix = url[len("s3://") :].partition("/")
            if not bucket:
                raise ValueError(f"MODELCREW_STORAGE_URL {url!r} names no bucket; use s3://bucket/prefix")
            return cls(url, S3Backend(bucket, prefix, region, endpoint_url), presign_expiry_seconds)
        raise ValueError(
            f"MODELCREW_STORAGE_URL {url!r} is not supported; use file://path (local) or s3://bucket/prefix"
        )

    @property
    def is_local(self) -> bool:
        return isinstance(self.backend, LocalBackend)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> PutResult:
        digest = sha256_hex(data)
        self.backend.put(validate_key(key), data, digest, content_type)
        return PutResult(key=key, sha256=digest, size=len(data), uri=self.uri(key))

    def put_if_absent(self, key: str, data: bytes, content_type: str | None = None) -> PutResult | None:
        """Write only when the key is free, atomically: of writers racing for one key exactly one gets a
        PutResult; the others (and any later one) get None and the first writer's bytes stay."""
        digest = sha256_hex(data)
        if not self.backend.put_if_absent(validate_key(key), data, digest, content_type):
            return None
        return PutResult(key=key, sha256=digest, size=len(data), uri=self.uri(key))

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> PutResult:
        """A finished file on disk, streamed (multipart on S3), so a checkpoint never sits in memory whole."""
        digest, size = file_sha256(path), path.stat().st_size
        self.backend.put_file(validate_key(key), path, digest, content_type)
        return PutResult(key=key, sha256=digest, size=size, uri=self.uri(key))

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; KeyError naming the key when it does not exist."""
        return self.backend.get(validate_key(key))

    def download(self, key: str, destination: Path) -> None:
        """The object written to `destination` (its folder is made); KeyError naming the key when missing."""
        self.backend.download(validate_key(key), destination)

    def exists(self, key: str) -> bool:
        return self.backend.head(validate_key(key)) is not None

    def head(self, key: str) -> StoredObject | None:
        return self.backend.head(validate_key(key))

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Every object under the prefix in key order, across as many pages as the store needs."""
        if prefix:
            validate_key(prefix.rstrip("/") or "x")
        return self.backend.list(prefix)

    def content_sha256(self, key: str) -> str:
        """sha256 of the object's content: recorded at write time on S3, computed otherwise (and for an
        object written by something else); KeyError naming the key when it does not exist."""
        return self.backend.stored_sha256(validate_key(key)) or sha256_hex(self.get_bytes(key))

    def presigned_get_url(self, key: str, expires_in: int | None = None) -> str:
        """A GET URL that expires; the bucket itself stays private. Local storage cannot make one."""
        return self.backend.presign(validate_key(key), expires_in or self.presign_expiry_seconds)

    def uri(self, key: str) -> str:
        return self.backend.uri(validate_key(key))

    def key_of_s3_object(self, bucket: str, object_key: str) -> str | None:
        """The storage key of an object named as S3 names it (bucket and full key, as in an event
        notification); None when it lies outside this storage (another bucket or prefix, or local storage)."""
        backend = self.backend
        if not isinstance(backend, S3Backend) or bucket != backend.bucket or not object_key.startswith(backend.prefix):
            return None
        return object_key[len(backend.prefix) :] or None
