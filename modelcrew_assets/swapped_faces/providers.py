"""Who does the swap, behind one small interface, so the flow, the ledger and the caching are the same code
whichever provider runs: MaxStudio (live, paid; resources/maxstudio.py) or the local simulated swapper
(simulated.py). Which one a deployment binds is decided once, in resources/selection.py.

Providers raise only the errors defined here: the flow never sees a concrete service's error types."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import ClassVar, Protocol

from pydantic import Field

from modelcrew_assets.face_detection import FaceBox
from modelcrew_assets.resources.service import ServiceResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.swapped_faces.inputs import ProviderName, SwapInput


class SwapProviderError(Exception):
    """A provider call that failed for good; the message says what and why, never a secret."""


class AmbiguousCreateError(SwapProviderError):
    """A create request may have reached the provider though no answer came: creating again could bill twice."""


class SwapJobFailedError(SwapProviderError):
    """The provider finished the job as failed (the message carries its reason); a rerun may create another."""


class ResultGoneError(SwapProviderError):
    """A finished job's result can no longer be fetched; a rerun may create another job."""


class SwapProvider(Protocol):
    name: str
    simulated: bool  # the label (dry_run) on what it makes

    async def detect(self, target: SwapInput) -> list[FaceBox]: ...

    async def create_swap(self, target: SwapInput, face: SwapInput, boxes: Sequence[FaceBox]) -> str: ...

    async def finish_swap(self, job_id: str, target: SwapInput, face: SwapInput, boxes: Sequence[FaceBox]) -> bytes: ...

    async def create_enhance(self, image: bytes) -> str: ...

    async def finish_enhance(self, job_id: str, image: bytes) -> bytes: ...


class SwapServiceResource(ServiceResource):
    """The face-swap service the swapped_faces asset asks. Subclasses: MaxStudioResource (live),
    SimulatedSwapResource (dry run)."""

    # Part of every cache key, so results of different providers never stand in for each other.
    provider_name: ClassVar[ProviderName]

    max_concurrency: int = Field(default=4, ge=1, le=64, description="simultaneous requests and running jobs")
    price_per_job: float = Field(default=0.0, ge=0, description="USD per created job, for the cost estimate")

    def check_ready(self, storage: StorageResource) -> None:
        """Raise before any call when a run cannot work (no credential, storage the service cannot fetch)."""

    @abc.abstractmethod
    def swaps(self, storage: StorageResource, face: SwapInput) -> AbstractAsyncContextManager[SwapProvider]:
        """One run's provider for this face: `async with resource.swaps(storage, face) as provider:`."""
