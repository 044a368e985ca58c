"""The worker's storage: the project's ObjectStore, in the region its launcher set (AWS_REGION on a pod)."""

from __future__ import annotations

import os

from modelcrew_assets.object_store import ObjectStore


def open_store(url: str) -> ObjectStore:
    return ObjectStore.from_url(url, region=os.environ.get("AWS_REGION") or None)
