"""Who does the swap: MaxStudio (live, paid) or the local dry-run swapper, behind one small interface,
so the flow, the ledger and the caching are the same code in both modes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from modelcrew_assets.face_detection import FaceBox
from modelcrew_assets.resources.maxstudio import MaxStudioClient
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.swapped_faces.inputs import SwapInput


class SwapProvider(Protocol):
    name: str
    dry_run: bool

    async def detect(self, target: SwapInput) -> list[FaceBox]: ...

    async def create_swap(self, target: SwapInput, face: SwapInput, boxes: Sequence[FaceBox]) -> str: ...

    async def finish_swap(
        self, job_id: str, target: SwapInput, face: SwapInput, boxes: Sequence[FaceBox]
    ) -> bytes: ...

    async def create_enhance(self, image: bytes) -> str: ...

    async def finish_enhance(self, job_id: str, image: bytes) -> bytes: ...


class MaxStudioProvider:
    """Live swaps. MaxStudio fetches the photos itself, through presigned URLs that are never logged."""

    name = "maxstudio"
    dry_run = False

    def __init__(self, client: MaxStudioClient, storage: StorageResource):
        self.client = client
        self.storage = storage

    async def detect(self, target: SwapInput) -> list[FaceBox]:
        boxes = await self.client.detect_faces(self.storage.presigned_get_url(target.key))
        return sorted(boxes, key=lambda box: box.area, reverse=True)

    async def create_swap(self, target: SwapInput, face: SwapInput, boxes: Sequence[FaceBox]) -> str:
        return await self.client.create_swap(
            self.storage.presigned_get_url(target.key), boxes, self.storage.presigned_get_url(face.key)
        )

    async def finish_swap(
        self, job_id: str, target: SwapInput, face: SwapInput, boxes: Sequence[FaceBox]
    ) -> bytes:
        return await self.client.download(await self.client.wait_for_swap(job_id))

    async def create_enhance(self, image: bytes) -> str:
        return await self.client.create_enhance(image)

    async def finish_enhance(self, job_id: str, image: bytes) -> bytes:
        return await self.client.wait_for_enhance(job_id)
