"""Instagram's own insights for a model's posts, for accounts that connect a token (optional).

A model's token is `INSTAGRAM_ACCESS_TOKEN_<MODEL>` (the slug upper-cased, '-' as '_'): one professional
account per persona, so one token per model; without it Buffer's numbers are used alone. The token goes in
the Authorization header, never in a URL. Posts are matched to the account's media by publish time
(`GET /me/media?fields=id,timestamp`, newest first, within `MATCH_TOLERANCE` of the post's due time), then
`GET /<media-id>/insights?metric=views,reach,likes,comments,saved,shares,total_interactions` (lifetime,
organic only, up to 48 h late; `impressions` and `plays` are deprecated and not asked for). An empty data
set or error 10 ("not enough viewers") means no numbers yet, never zeros.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from modelcrew_assets.post_metrics.provider import PostReading, PostRef
from modelcrew_assets.resources.http_api import ApiError, JsonApiClient

DEFAULT_GRAPH_URL = "https://graph.instagram.com"
TOKEN_ENV_PREFIX = "INSTAGRAM_ACCESS_TOKEN_"
METRICS = ("views", "reach", "likes", "comments", "saved", "shares", "total_interactions")
# Instagram's names -> the normalised counts (Buffer's names).
NORMALISED = {
    "views": "views",
    "reach": "reach",
    "likes": "reactions",
    "comments": "comments",
    "saved": "saves",
    "shares": "shares",
}
MATCH_TOLERANCE = timedelta(minutes=30)
_MEDIA_PAGES = 10


def token_env(model: str) -> str:
    return TOKEN_ENV_PREFIX + model.upper().replace("-", "_")


def instagram_token(model: str) -> str | None:
    return os.environ.get(token_env(model)) or None


class InstagramInsights:
    def __init__(self, graph: JsonApiClient):
        self._graph = graph

    async def read(self, posts: list[PostRef]) -> list[PostReading]:
        if not posts:
            return []
        media = await self._media_since(min(p.due_at for p in posts) - MATCH_TOLERANCE)
        readings = []
        for post, media_id in match_media(posts, media).items():
            if media_id is None:
                readings.append(PostReading(post, "instagram", None, note="no Instagram media at the post's time"))
            else:
                readings.append(await self._insights(post, media_id))
        return readings

    async def _media_since(self, oldest: datetime) -> list[tuple[str, datetime]]:
        media: list[tuple[str, datetime]] = []
        path = "/me/media?fields=id,timestamp&limit=50"
        for _ in range(_MEDIA_PAGES):
            page = await self._graph.call("GET", path, label="media list")
            media += [(item["id"], _parse(item["timestamp"])) for item in page.get("data", [])]
            after = (page.get("paging") or {}).get("cursors", {}).get("after")
            if not after or not media or media[-1][1] < oldest:
                break
            path = f"/me/media?fields=id,timestamp&limit=50&after={after}"
        return media

    async def _insights(self, post_id: str, media_id: str) -> PostReading:
        try:
            answer = await self._graph.call("GET", f"/{media_id}/insights?metric={','.join(METRICS)}", label="insights")
        except ApiError as error:
            return PostReading(post_id, "instagram", None, note=f"Instagram insights unavailable: {error}")
        values = {row["name"]: float(row["values"][0]["value"]) for row in answer.get("data", []) if row.get("values")}
        if not values:
            return PostReading(post_id, "instagram", None, note="Instagram has no insights for the media yet")
        counts = {NORMALISED[name]: value for name, value in values.items() if name in NORMALISED}
        return PostReading(post_id, "instagram", counts, updated_at=None)


def match_media(posts: list[PostRef], media: list[tuple[str, datetime]]) -> dict[str, str | None]:
    """post id -> the media published nearest its due time (within MATCH_TOLERANCE), each media used once."""
    taken: set[str] = set()
    matched: dict[str, str | None] = {}
    for post in sorted(posts, key=lambda p: p.due_at):
        near = [(abs(stamp - post.due_at), media_id) for media_id, stamp in media if media_id not in taken]
        near = [pair for pair in near if pair[0] <= MATCH_TOLERANCE]
        matched[post.post_id] = min(near)[1] if near else None
        if near:
            taken.add(min(near)[1])
    return matched


def _parse(value: str) -> datetime:
    # Graph timestamps are ISO 8601 with a +0000 offset.
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z")
