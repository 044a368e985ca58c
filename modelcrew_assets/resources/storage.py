"""StorageResource: one interface over local disk and S3 for everything modelcrew reads and writes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from modelcrew_assets.resources.storage_backends import (
    LocalBackend,
    S3Backend,
    StorageBackend,
    StoredObject,
    sha256_hex,
)
from modelcrew_assets.storage_keys import validate_key

DEFAULT_STORAGE_URL = "file://.modelcrew/storage"


@dataclass(frozen=True)
class PutResult:
    key: str
    sha256: str
    size: int
    uri: str


class StorageResource(dg.ConfigurableResource):
    """Where uploads and every asset's files live: `file://<path>` or `s3://bucket/prefix`.

    There is deliberately no delete: nothing a user uploaded or paid for is ever removed by the platform.
    """

    url: str = Field(default=DEFAULT_STORAGE_URL, description="file://path or s3://bucket/prefix")
    region: str | None = Field(default=None, description="S3 region; boto3's default chain when unset")
    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint; AWS_ENDPOINT_URL_S3 is honoured when unset"
    )
    presign_expiry_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    _backend: StorageBackend | None = PrivateAttr(default=None)

    @property
    def backend(self) -> StorageBackend:
        if self._backend is None:
            self._backend = _make_backend(self.url, self.region, self.endpoint_url)
        return self._backend

    @property
    def is_local(self) -> bool:
        return isinstance(self.backend, LocalBackend)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> PutResult:
        digest = sha256_hex(data)
        self.backend.put(validate_key(key), data, digest, content_type)
        return PutResult(key=key, sha256=digest, size=len(data), uri=self.uri(key))

    def put_if_absent(self, key: str, data: bytes, content_type: str | None = None) -> PutResult | None:
        """Write only when the key is free; returns None when something is already there."""
        if self.exists(key):
            return None
        return self.put_bytes(key, data, content_type)

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; KeyError naming the key when it does not exist."""
        return self.backend.get(validate_key(key))

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
        """sha256 of the object's content: recorded at write time on S3, computed otherwise."""
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


def _make_backend(url: str, region: str | None, endpoint_url: str | None) -> StorageBackend:
    if url.startswith("file://"):
        return LocalBackend(Path(url[len("file://") :] or "."))
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"MODELCREW_STORAGE_URL {url!r} names no bucket; use s3://bucket/prefix")
        return S3Backend(bucket, prefix, region, endpoint_url)
    raise ValueError(
        f"MODELCREW_STORAGE_URL {url!r} is not supported; use file://path (local) or s3://bucket/prefix"
    )
