"""Buffer's GraphQL operations, as sent, and the rate-limit adapter for the shared API client.

Checked against developers.buffer.com (2026): guides/error-handling, guides/api-limits,
guides/posts-and-scheduling, examples/create-image-post (the array form of `assets`),
examples/create-video-post and types/VideoAssetInput (`{video: {url, metadata: {thumbnailOffset}}}`),
types/PostsFiltersInput, types/Asset, types/InstagramPostMetadataInput (type post | story | reel),
types/TikTokPostMetadataInput, types/DeletePostSuccess. Variables carry every value: no user text is spliced into a query.
"""

from __future__ import annotations

import json
import re

import httpx

from modelcrew_assets.resources.http_api import parse_retry_after

ORGANIZATIONS = "query Organizations { account { organizations { id } } }"
CHANNELS = (
    "query Channels($organizationId: OrganizationId!) "
    "{ channels(input: {organizationId: $organizationId}) { id service name } }"
)
DAILY_LIMITS = (
    "query DailyLimits($channelIds: [ChannelId!]!) "
    "{ dailyPostingLimits(input: {channelIds: $channelIds}) { channelId isAtLimit } }"
)
CREATE_POST = (
    "mutation CreatePost($input: CreatePostInput!) { createPost(input: $input) { __typename "
    "... on PostActionSuccess { post { id status dueAt } } ... on MutationError { message } } }"
)
POSTS = (
    "query Posts($input: PostsInput!, $first: Int, $after: String) { posts(input: $input, first: $first, "
    "after: $after) { edges { node { id status dueAt assets { source } } } pageInfo { hasNextPage endCursor } } }"
)
DELETE_POST = (
    "mutation DeletePost($input: DeletePostInput!) { deletePost(input: $input) { __typename "
    "... on DeletePostSuccess { id } ... on MutationError { message } } }"
)

# createPost's typed errors (members of its union, all implementing MutationError) -> the stage's kinds.
MUTATION_ERROR_KINDS = {
    "LimitReachedError": "limit_reached",
    "InvalidInputError": "invalid_input",
    "NotFoundError": "not_found",
    "UnauthorizedError": "unauthorized",
}
# System errors (errors[].extensions.code) after which a mutation's outcome is unknown.
UNKNOWN_OUTCOME_CODES = frozenset({"INTERNAL_SERVER_ERROR", "UNKNOWN_ERROR", "TIMEOUT"})
_RATE_LIMIT_ITEM = re.compile(r'"[^"]*";\s*r=(\d+);\s*t=(\d+)')


def operation_name(query: str) -> str:
    """The operation's name ("CreatePost"): what logs and errors show instead of the query."""
    return query.split("(", 1)[0].split("{", 1)[0].split()[1]


def rate_limit_wait_s(headers: httpx.Headers, body: bytes) -> float | None:
    """How long a 429 says to wait: Retry-After, else errors[0].extensions.retryAfter, else the reset time
    of the exhausted window in the IETF RateLimit headers (`"100-in-15min";r=0;t=120`)."""
    if (header := parse_retry_after(headers.get("Retry-After"))) is not None:
        return header
    try:
        extensions = json.loads(body)["errors"][0].get("extensions", {})
        return max(0.0, float(extensions["retryAfter"]))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        pass
    exhausted = [
        float(reset)
        for value in headers.get_list("RateLimit")
        for remaining, reset in _RATE_LIMIT_ITEM.findall(value)
        if remaining == "0"
    ]
    return max(exhausted) if exhausted else None


class RateLimitAdapter(httpx.AsyncBaseTransport):
    """Gives Buffer's 429s a Retry-After header, so the shared client (which honours Retry-After as the
    floor of its backoff) waits as long as Buffer says, wherever Buffer put the number."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None):
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if response.status_code != 429 or "Retry-After" in response.headers:
            return response
        body = await response.aread()
        await response.aclose()
        headers = httpx.Headers(response.headers)
        wait = rate_limit_wait_s(headers, body)
        if wait is not None:
            headers["Retry-After"] = str(int(wait + 0.999))
        headers.pop("Content-Encoding", None)
        headers.pop("Transfer-Encoding", None)
        headers["Content-Length"] = str(len(body))
        return httpx.Response(429, headers=headers, content=body, request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()
