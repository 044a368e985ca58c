"""BufferResource: posts through Buffer's GraphQL API (one POST endpoint, Bearer key), and the choice
between it and the simulated poster, chosen once from the environment (resources/selection.py).

All HTTP goes through the shared JsonApiClient: 429/5xx backoff (Buffer's retryAfter and RateLimit
headers honoured through RateLimitAdapter), queries retried as idempotent, createPost never re-sent
blindly. The API key lives only in the Authorization header: never in a URL, log, metadata or error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from modelcrew_assets.manifest import PostingChannel
from modelcrew_assets.object_store import Storage
from modelcrew_assets.resources import buffer_graphql as gql
from modelcrew_assets.resources.http_api import AmbiguousRequestError, ApiError, JsonApiClient, RetryPolicy
from modelcrew_assets.scheduled_posts.posting import (
    PUBLISH_PREFIX,
    AmbiguousPostError,
    Channel,
    PostingError,
    PostingServiceResource,
    PostRejectedError,
    PostRequest,
    RemotePost,
)
from modelcrew_assets.settings import require_credential

DEFAULT_API_URL = "https://api.buffer.com"
API_KEY_ENV = "BUFFER_API_KEY"
PUBLIC_MEDIA_ENV = "MODELCREW_PUBLIC_MEDIA_BASE_URL"
_PAGE = 50


class MissingPublicMediaError(PostingError):
    """Live posting without a public media base URL: Buffer could not fetch the images."""


class BufferResource(PostingServiceResource):
    """Live Buffer. Media go by `MODELCREW_PUBLIC_MEDIA_BASE_URL` (the CDN or public bucket prefix that
    serves storage's publish/ prefix); presigned URLs are never sent, since they expire before posting."""

    api_key: str | None = Field(default=None, description="BUFFER_API_KEY: a personal key (Settings > API)")
    api_url: str = Field(default=DEFAULT_API_URL, description="BUFFER_API_URL: the GraphQL endpoint")
    public_media_base_url: str | None = Field(
        default=None, description="MODELCREW_PUBLIC_MEDIA_BASE_URL: the public URL of storage's publish/ prefix"
    )
    max_concurrency: int = Field(default=2, ge=1, le=16)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    retry_base_delay_s: float = Field(default=0.5, ge=0)
    retry_max_delay_s: float = Field(default=120.0, ge=0)

    def public_url(self, publish_key: str) -> str:
        if not self.public_media_base_url:
            raise MissingPublicMediaError(
                f"scheduled_posts: live posting needs {PUBLIC_MEDIA_ENV}, the stable public URL that serves "
                "storage's publish/ prefix (a CDN, or a bucket prefix made public on purpose); Buffer fetches "
                "images when the post goes out, so presigned URLs, which expire, are never sent"
            )
        return f"{self.public_media_base_url.rstrip('/')}/{publish_key.removeprefix(PUBLISH_PREFIX)}"

    @asynccontextmanager
    async def session(self, storage: Storage, model: str) -> AsyncIterator[BufferSession]:
        key = require_credential(self.api_key, API_KEY_ENV, "Buffer")
        policy = RetryPolicy(self.max_attempts, self.retry_base_delay_s, self.retry_max_delay_s)
        async with JsonApiClient(
            "Buffer",
            self.api_url,
            {"Authorization": f"Bearer {key}"},
            max_concurrency=self.max_concurrency,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            policy=policy,
            transport=gql.RateLimitAdapter(),
        ) as api:
            yield BufferSession(api)


class BufferSession:
    def __init__(self, api: JsonApiClient):
        self._api = api
        self._organizations: list[str] | None = None

    async def resolve_channels(self, wanted: dict[str, PostingChannel]) -> dict[str, Channel]:
        known: list[Channel] = []
        for organization in await self._organization_ids():
            data = await self._query(gql.CHANNELS, {"organizationId": organization})
            known += [Channel(c["id"], c["service"], c["name"], organization) for c in data["channels"]]
        resolved, missing = {}, []
        for platform, ref in wanted.items():
            match = (
                [c for c in known if c.id == ref.id]
                if ref.id
                else [c for c in known if c.service == ref.service and c.name.lower() == (ref.name or "").lower()]
            )
            if match:
                resolved[platform] = match[0]
            else:
                missing.append(f"{platform} ({ref.id or f'{ref.service} {ref.name!r}'})")
        if missing:
            raise PostingError(
                f"Buffer: no connected channel for {', '.join(missing)}; the account has "
                f"{', '.join(f'{c.service} {c.name!r} ({c.id})' for c in known) or 'no channels'}; "
                "fix [posting].channels in model.toml or connect the channel in Buffer"
            )
        return resolved

    async def channels_at_daily_limit(self, channel_ids: list[str]) -> set[str]:
        data = await self._query(gql.DAILY_LIMITS, {"channelIds": channel_ids})
        return {row["channelId"] for row in data["dailyPostingLimits"] if row["isAtLimit"]}

    async def create_post(self, request: PostRequest) -> RemotePost:
        try:
            data = await self._call(gql.CREATE_POST, {"input": _create_input(request)}, mutation=True)
        except AmbiguousRequestError as error:
            raise AmbiguousPostError(str(error)) from None
        except PostingError as error:
            # Buffer answered with a system error (bad key, unknown channel): nothing was created.
            raise PostRejectedError(str(error), "system") from None
        answer = data["createPost"]
        if answer.get("__typename") == "PostActionSuccess":
            return _remote_post(answer["post"])
        kind = gql.MUTATION_ERROR_KINDS.get(answer.get("__typename", ""), "other")
        raise PostRejectedError(f"Buffer refused the post ({answer.get('__typename')}): {answer.get('message')}", kind)

    async def find_posts(self, channel: Channel, start: datetime, end: datetime) -> list[RemotePost]:
        found, after = [], None
        while True:
            variables = {
                "first": _PAGE,
                "after": after,
                "input": {
                    "organizationId": channel.organization_id,
                    "filter": {"channelIds": [channel.id], "dueAt": {"start": _iso(start), "end": _iso(end)}},
                },
            }
            page = (await self._query(gql.POSTS, variables))["posts"]
            found += [_remote_post(edge["node"]) for edge in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                return found
            after = page["pageInfo"]["endCursor"]

    async def delete_post(self, post_id: str) -> None:
        data = await self._call(gql.DELETE_POST, {"input": {"id": post_id}}, mutation=True)
        answer = data["deletePost"]
        if answer.get("__typename") != "DeletePostSuccess":
            raise PostingError(f"Buffer could not delete post {post_id}: {answer.get('message')}")

    async def _organization_ids(self) -> list[str]:
        if self._organizations is None:
            data = await self._query(gql.ORGANIZATIONS, {})
            self._organizations = [org["id"] for org in data["account"]["organizations"]]
        return self._organizations

    async def _query(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._call(query, variables, mutation=False)
        except ApiError as error:
            raise PostingError(str(error)) from None

    async def _call(self, query: str, variables: dict[str, Any], *, mutation: bool) -> dict[str, Any]:
        operation = gql.operation_name(query)
        try:
            body = await self._api.call(
                "POST",
                "",
                json={"query": query, "variables": variables, "operationName": operation},
                idempotent=not mutation,
                label=operation,
            )
        except AmbiguousRequestError:
            raise
        except ApiError as error:
            raise PostingError(str(error)) from None
        errors = body.get("errors") or []
        if errors:
            codes = [str((item.get("extensions") or {}).get("code", "UNKNOWN_ERROR")) for item in errors]
            details = "; ".join(f"{code}: {item.get('message')}" for code, item in zip(codes, errors, strict=True))
            message = f"Buffer {operation}: {details}"
            if mutation and set(codes) & gql.UNKNOWN_OUTCOME_CODES:
                raise AmbiguousRequestError(message)
            raise PostingError(message)
        return body["data"]


def _create_input(request: PostRequest) -> dict[str, Any]:
    service = request.channel.service
    metadata: dict[str, Any] = {}
    if service == "instagram":
        metadata["instagram"] = {"type": request.instagram_type, "shouldShareToFeed": True, "isAiGenerated": True}
    elif service == "tiktok":
        # isAiGenerated is documented for TikTok videos; the input type accepts it on photos too, so the
        # disclosure is sent on both. The title exists for photo posts only.
        metadata["tiktok"] = (
            {"isAiGenerated": True} if request.video else {"title": request.title, "isAiGenerated": True}
        )
    payload: dict[str, Any] = {
        "channelId": request.channel.id,
        "text": request.text,
        "schedulingType": "automatic",
        "mode": "customScheduled" if request.due_at else "addToQueue",
        "assets": [_asset(request)],
        "metadata": metadata,
    }
    if request.due_at:
        payload["dueAt"] = _iso(request.due_at)
    if request.draft:
        payload["saveToDraft"] = True
    return payload


def _asset(request: PostRequest) -> dict[str, Any]:
    if not request.video:
        return {"image": {"url": request.media_url}}
    # VideoAssetInput: Buffer rejects thumbnailUrl on video; the cover is a frame chosen by its offset.
    video: dict[str, Any] = {"url": request.media_url}
    if request.thumbnail_offset_ms is not None:
        video["metadata"] = {"thumbnailOffset": request.thumbnail_offset_ms}
    return {"video": video}


def _remote_post(node: dict[str, Any]) -> RemotePost:
    due = node.get("dueAt")
    sources = node.get("assets") or []
    return RemotePost(
        id=node["id"],
        status=str(node.get("status") or ""),
        due_at=datetime.fromisoformat(due.replace("Z", "+00:00")) if due else None,
        media_urls=tuple(asset["source"] for asset in sources if isinstance(asset, dict) and asset.get("source")),
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
