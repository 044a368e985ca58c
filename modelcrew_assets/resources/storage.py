"""StorageResource: the project's ObjectStore (local disk or S3) as a Dagster resource bound to settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from modelcrew_assets.object_store import ObjectStore, PutResult
from modelcrew_assets.resources.storage_backends import StorageBackend, StoredObject

DEFAULT_STORAGE_URL = "file://.modelcrew/storage"

__all__ = ["DEFAULT_STORAGE_URL", "PutResult", "StorageResource"]


class StorageResource(dg.ConfigurableResource):
    """Where uploads and every asset's files live: `file://<path>` or `s3://bucket/prefix`. Every call goes
    to the ObjectStore built from these settings (no delete there either)."""

    url: str = Field(default=DEFAULT_STORAGE_URL, description="file://path or s3://bucket/prefix")
    region: str | None = Field(default=None, description="S3 region; boto3's default chain when unset")
    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint; AWS_ENDPOINT_URL_S3 is honoured when unset"
    )
    presign_expiry_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    _store: ObjectStore | None = PrivateAttr(default=None)

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = ObjectStore.from_url(self.url, self.region, self.endpoint_url, self.presign_expiry_seconds)
        return self._store

    @property
    def backend(self) -> StorageBackend:
        return self.store.backend

    @property
    def is_local(self) -> bool:
        return self.store.is_local

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> PutResult:
        return self.store.put_bytes(key, data, content_type)

    def put_if_absent(self, key: str, data: bytes, content_type: str | None = None) -> PutResult | None:
        return self.store.put_if_absent(key, data, content_type)

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> PutResult:
        return self.store.put_file(key, path, content_type)

    def get_bytes(self, key: str) -> bytes:
        return self.store.get_bytes(key)

    def download(self, key: str, destination: Path) -> None:
        self.store.download(key, destination)

    def exists(self, key: str) -> bool:
        return self.store.exists(key)

    def head(self, key: str) -> StoredObject | None:
        return self.store.head(key)

    def list(self, prefix: str) -> Iterator[StoredObject]:
        return self.store.list(prefix)

    def content_sha256(self, key: str) -> str:
        return self.store.content_sha256(key)

    def presigned_get_url(self, key: str, expires_in: int | None = None) -> str:
        return self.store.presigned_get_url(key, expires_in)

    def uri(self, key: str) -> str:
        return self.store.uri(key)

    def key_of_s3_object(self, bucket: str, object_key: str) -> str | None:
        return self.store.key_of_s3_object(bucket, object_key)
