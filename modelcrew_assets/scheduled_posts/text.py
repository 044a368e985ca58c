"""A post's text: post_text.py's caption and hashtags, fitted to the platform's limits. The AI disclosure
(in the caption and the hashtags) is always kept; only the caption's scene part is shortened."""

from __future__ import annotations

from dataclasses import dataclass

from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.platform_exports.post_text import AI_DISCLOSURE_TAGS, hashtags, suggested_caption

DISCLOSURE = "(AI-generated)"
TIKTOK_TITLE_LIMIT = 90


@dataclass(frozen=True)
class TextLimits:
    characters: int
    hashtags: int


LIMITS = {"instagram": TextLimits(2200, 30), "tiktok": TextLimits(2200, 30)}
DEFAULT_LIMITS = TextLimits(2200, 30)


@dataclass(frozen=True)
class PostText:
    text: str
    title: str  # TikTok photo posts' title


def post_text(prompt: str, spec: ModelSpec, service: str, caption: str | None = None) -> PostText:
    limits = LIMITS.get(service, DEFAULT_LIMITS)
    body = (caption or suggested_caption(prompt, spec)).strip()
    if DISCLOSURE.lower() not in body.lower():
        body = f"{body} {DISCLOSURE}"
    scene = body.replace(DISCLOSURE, "").strip().rstrip(".")
    tags = _fitted_tags(hashtags(spec), limits.hashtags)
    tail = f" {DISCLOSURE}\n\n{' '.join(tags)}"
    room = limits.characters - len(tail) - 1
    if len(scene) + 1 > room:
        scene = scene[: max(0, room - 1)].rstrip() + "…"
    title = f"{scene[: TIKTOK_TITLE_LIMIT - len(DISCLOSURE) - 2].rstrip()}. {DISCLOSURE}"
    return PostText(text=f"{scene}.{tail}", title=title)


def _fitted_tags(tags: tuple[str, ...], limit: int) -> tuple[str, ...]:
    own = [tag for tag in tags if tag not in AI_DISCLOSURE_TAGS]
    return (*own[: max(0, limit - len(AI_DISCLOSURE_TAGS))], *AI_DISCLOSURE_TAGS)
