"""BufferMetricsResource: each post's engagement from Buffer's GraphQL API (the posting key), plus
Instagram's own insights for models whose account has a token (resources/instagram_insights.py).

Buffer's `Post.metrics { type value unit }` and `metricsUpdatedAt` are marked experimental and refreshed
about daily; a post Buffer has not measured yet has `metricsUpdatedAt: null` (its values default to 0
then, so they are not read as zeros). A schema without the field (the experiment withdrawn) raises
MetricsUnavailableError: post_metrics records "unavailable" and carries on with Instagram's numbers.
Reads are queries, so the shared client retries them as idempotent; the key lives only in the header.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field

from modelcrew_assets.post_metrics.provider import (
    COUNTS,
    MetricsError,
    MetricsServiceResource,
    MetricsUnavailableError,
    PostReading,
    PostRef,
)
from modelcrew_assets.resources import buffer_graphql as gql
from modelcrew_assets.resources.buffer import API_KEY_ENV, DEFAULT_API_URL
from modelcrew_assets.resources.http_api import ApiError, JsonApiClient, RetryPolicy
from modelcrew_assets.resources.instagram_insights import DEFAULT_GRAPH_URL, InstagramInsights, instagram_token
from modelcrew_assets.settings import require_credential

POST_METRICS = (
    "query PostMetrics($input: PostsInput!, $first: Int, $after: String) { posts(input: $input, first: $first, "
    "after: $after) { edges { node { id status dueAt metrics { type value unit } metricsUpdatedAt } } "
    "pageInfo { hasNextPage endCursor } } }"
)
_PAGE = 50
_WINDOW_MARGIN = timedelta(days=1)


class BufferMetricsResource(MetricsServiceResource):
    """Live: Buffer's post metrics (BUFFER_API_KEY), and Instagram insights where a model has a token."""

    api_key: str | None = Field(default=None, description="BUFFER_API_KEY: the same key posting uses")
    api_url: str = Field(default=DEFAULT_API_URL, description="BUFFER_API_URL: the GraphQL endpoint")
    instagram_graph_url: str = Field(
        default=DEFAULT_GRAPH_URL, description="INSTAGRAM_GRAPH_URL: graph.instagram.com, or graph.facebook.com/vNN"
    )
    connect_timeout_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    retry_base_delay_s: float = Field(default=0.5, ge=0)
    retry_max_delay_s: float = Field(default=120.0, ge=0)

    @asynccontextmanager
    async def session(self, model: str) -> AsyncIterator[BufferMetricsSession]:
        key = require_credential(self.api_key, API_KEY_ENV, "Buffer")
        policy = RetryPolicy(self.max_attempts, self.retry_base_delay_s, self.retry_max_delay_s)
        timeouts = {"connect_timeout_s": self.connect_timeout_s, "read_timeout_s": self.read_timeout_s}
        async with JsonApiClient(
            "Buffer",
            self.api_url,
            {"Authorization": f"Bearer {key}"},
            max_concurrency=2,
            policy=policy,
            transport=gql.RateLimitAdapter(),
            **timeouts,
        ) as api:
            token = instagram_token(model)
            if token is None:
                yield BufferMetricsSession(api, None)
                return
            async with JsonApiClient(
                "Instagram", self.instagram_graph_url, {"Authorization": f"Bearer {token}"}, policy=policy, **timeouts
            ) as graph:
                yield BufferMetricsSession(api, InstagramInsights(graph))


class BufferMetricsSession:
    def __init__(self, api: JsonApiClient, instagram: InstagramInsights | None):
        self._api = api
        self._instagram = instagram

    async def read(self, posts: list[PostRef]) -> list[PostReading]:
        readings: list[PostReading] = []
        if self._instagram is not None:
            readings += await self._instagram.read([p for p in posts if p.service == "instagram"])
        try:
            readings += await self._buffer_readings(posts)
        except MetricsUnavailableError as error:
            readings += [PostReading(p.post_id, "buffer", None, note=str(error), available=False) for p in posts]
        return readings

    async def _buffer_readings(self, posts: list[PostRef]) -> list[PostReading]:
        wanted = {post.post_id: post for post in posts}
        by_channel: dict[str, list[PostRef]] = defaultdict(list)
        for post in posts:
            by_channel[post.channel_id].append(post)
        found: dict[str, PostReading] = {}
        for organization, channel_ids in (await self._organizations_of(set(by_channel))).items():
            group = [post for channel in channel_ids for post in by_channel[channel]]
            start = min(p.due_at for p in group) - _WINDOW_MARGIN
            end = max(p.due_at for p in group) + _WINDOW_MARGIN
            flt = {"channelIds": sorted(channel_ids), "dueAt": {"start": _iso(start), "end": _iso(end)}}
            async for node in self._nodes({"organizationId": organization, "filter": flt}):
                if node["id"] in wanted:
                    found[node["id"]] = _reading(node)
        missing = "Buffer does not list the post (deleted, or not sent through this account)"
        return [found.get(post_id) or PostReading(post_id, "buffer", None, note=missing) for post_id in wanted]

    async def _organizations_of(self, channel_ids: set[str]) -> dict[str, list[str]]:
        """organization id -> the wanted channels it holds (the posts query is scoped to one organization)."""
        data = await self._query(gql.ORGANIZATIONS, {})
        owned: dict[str, list[str]] = {}
        for org in data["account"]["organizations"]:
            channels = (await self._query(gql.CHANNELS, {"organizationId": org["id"]}))["channels"]
            mine = [c["id"] for c in channels if c["id"] in channel_ids]
            if mine:
                owned[org["id"]] = mine
        return owned

    async def _nodes(self, query_input: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        after = None
        while True:
            variables = {"first": _PAGE, "after": after, "input": query_input}
            page = (await self._query(POST_METRICS, variables))["posts"]
            for edge in page["edges"]:
                yield edge["node"]
            if not page["pageInfo"]["hasNextPage"]:
                return
            after = page["pageInfo"]["endCursor"]

    async def _query(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        operation = gql.operation_name(query)
        body = {"query": query, "variables": variables, "operationName": operation}
        try:
            answer = await self._api.call("POST", "", json=body, idempotent=True, label=operation)
        except ApiError as error:
            raise MetricsError(str(error)) from None
        errors = answer.get("errors") or []
        if not errors:
            return answer["data"]
        details = "; ".join(
            f"{(e.get('extensions') or {}).get('code', 'UNKNOWN_ERROR')}: {e.get('message')}" for e in errors
        )
        if any("metrics" in str(e.get("message", "")).lower() for e in errors):
            raise MetricsUnavailableError(
                f"Buffer {operation}: the experimental post metrics are not available ({details}); "
                "readings are recorded as unavailable until Buffer serves them again"
            )
        raise MetricsError(f"Buffer {operation}: {details}")


def _reading(node: dict[str, Any]) -> PostReading:
    updated = node.get("metricsUpdatedAt")
    if not updated or node.get("metrics") is None:
        return PostReading(node["id"], "buffer", None, note="Buffer has not measured the post yet")
    values = {m["type"]: float(m["value"]) for m in node["metrics"] if m.get("value") is not None}
    return PostReading(
        node["id"],
        "buffer",
        {name: values[name] for name in COUNTS if name in values},
        updated_at=_parse(updated),
        engagement_rate=values.get("engagementRate"),
    )


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
