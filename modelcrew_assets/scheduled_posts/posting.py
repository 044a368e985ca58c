"""The posting service as the scheduled_posts stage sees it: a provider interface with no Buffer in it.

`PostingServiceResource` is what the asset annotates; `session()` gives a `PostingSession` for one run.
Implementations: `BufferResource` (resources/buffer.py, live) and `SimulatedPostingResource`
(scheduled_posts/simulated.py). The stage catches only the errors defined here; the live provider
translates Buffer's answers into them.
"""

from __future__ import annotations

import abc
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from modelcrew_assets.manifest import PostingChannel
from modelcrew_assets.object_store import Storage
from modelcrew_assets.resources.service import ServiceResource

BufferMode = Literal["addToQueue", "customScheduled"]
PUBLISH_PREFIX = "publish/"  # the storage prefix a live service fetches media from, at a public URL


@dataclass(frozen=True)
class Channel:
    id: str
    service: str  # "instagram", "tiktok", ...
    name: str
    organization_id: str = ""


@dataclass(frozen=True)
class PostRequest:
    channel: Channel
    text: str
    media_url: str  # a stable public URL of the image or video: the service fetches it when the post goes out
    due_at: datetime | None  # UTC; None: the service's own queue picks the time
    draft: bool
    title: str = ""  # TikTok photo posts' title
    instagram_type: Literal["post", "story", "reel"] = "post"
    video: bool = False  # an MP4 (a reel on Instagram, a video on TikTok), not an image
    thumbnail_offset_ms: int | None = None  # video only: the frame shown as its cover


@dataclass(frozen=True)
class RemotePost:
    id: str
    status: str  # the service's own word: draft, scheduled, sent, error ...
    due_at: datetime | None
    media_urls: tuple[str, ...] = ()


class PostingError(RuntimeError):
    """A call to the posting service that failed for good; the message never carries a secret."""


class PostRejectedError(PostingError):
    """The service answered and refused the post (nothing was created): `kind` says why."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind  # "limit_reached", "invalid_input", "not_found", "unauthorized", "other"


class AmbiguousPostError(PostingError):
    """The create request may have reached the service: the post may exist. Reconcile before re-sending."""


class PostingSession(Protocol):
    async def resolve_channels(self, wanted: dict[str, PostingChannel]) -> dict[str, Channel]: ...

    async def channels_at_daily_limit(self, channel_ids: list[str]) -> set[str]: ...

    async def create_post(self, request: PostRequest) -> RemotePost: ...

    async def find_posts(self, channel: Channel, start: datetime, end: datetime) -> list[RemotePost]: ...

    async def delete_post(self, post_id: str) -> None: ...


class PostingServiceResource(ServiceResource):
    """Where scheduled_posts sends posts. Subclasses: BufferResource (live), SimulatedPostingResource."""

    @abc.abstractmethod
    def public_url(self, publish_key: str) -> str:
        """The stable public URL the service will fetch `publish/...` from; raises when there is none."""

    @abc.abstractmethod
    def session(self, storage: Storage, model: str) -> AbstractAsyncContextManager[PostingSession]:
        """An async session for one run: `async with posting.session(storage, model) as s: ...`."""
