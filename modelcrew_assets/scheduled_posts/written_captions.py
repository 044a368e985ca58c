"""Post captions written by the vision model the captions stage uses (`[posting] captions = "captioner"`).

One request per approved picture not yet sent (a reel is asked about its poster frame), cached per export
under the stage's prefix, so a rerun asks nothing again and a person's edit in post_texts.csv still wins.
The model writes the scene only: post_text.py adds the AI disclosure and the hashtags and fits the
platform's limits, so what a model leaves out or adds (hashtags, quotes) never changes the disclosure."""

from __future__ import annotations

import asyncio
import logging
import re

from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.object_store import Storage
from modelcrew_assets.resources.captioner import CaptionServiceResource, CaptionSession
from modelcrew_assets.resources.http_api import ApiError
from modelcrew_assets.scheduled_posts.index import BacklogItem, ScheduledPosts
from modelcrew_assets.storage_keys import asset_prefix

SYSTEM = (
    "You write social media captions for {name}, a virtual persona: an AI-generated character, never a real "
    "person. Write in the first person, warm and natural, one or two short sentences. No hashtags, no "
    "quotation marks, no mention of AI (the platform adds the disclosure)."
)
INSTRUCTION = "Write the caption for this picture. What it shows: {scene}"
_HASHTAG = re.compile(r"(^|\s)#\w+")


def written_caption_key(model: str, export_id: str) -> str:
    return f"{asset_prefix(model, ScheduledPosts.ASSET)}written_captions/{export_id}.txt"


async def written_captions(
    storage: Storage,
    captioner: CaptionServiceResource,
    spec: ModelSpec,
    items: list[BacklogItem],
    log: logging.Logger,
) -> dict[str, str]:
    """export id -> the model's caption, for `items` (those still to be sent); {} with template captions."""
    if spec.posting.captions != "captioner":
        return {}
    if not captioner.enabled:
        log.warning(
            "scheduled_posts: [posting] captions = 'captioner' but no captioner is configured "
            "(CAPTION_API_BASE_URL); posts get template captions"
        )
        return {}
    wanted = {item.export_id: item for item in items}
    found = {export_id: _cached(storage, spec.name, export_id) for export_id in wanted}
    missing = [item for export_id, item in wanted.items() if found[export_id] is None]
    if missing:
        async with captioner.session() as session:
            slots = asyncio.Semaphore(session.max_concurrency)
            written = await asyncio.gather(*(_write(storage, session, slots, spec, item, log) for item in missing))
        found |= dict(zip((item.export_id for item in missing), written, strict=True))
    return {export_id: text for export_id, text in found.items() if text}


def _cached(storage: Storage, model: str, export_id: str) -> str | None:
    try:
        return storage.get_bytes(written_caption_key(model, export_id)).decode("utf-8")
    except KeyError:
        return None


async def _write(
    storage: Storage,
    session: CaptionSession,
    slots: asyncio.Semaphore,
    spec: ModelSpec,
    item: BacklogItem,
    log: logging.Logger,
) -> str | None:
    picture_key = item.poster_key if item.media == "video" else item.export_key
    async with slots:
        picture = await asyncio.to_thread(storage.get_bytes, picture_key)
        try:
            answer = await session.caption(
                picture,
                picture_key,
                SYSTEM.format(name=spec.name),
                INSTRUCTION.format(scene=item.prompt or "a photo of the persona"),
            )
        except ApiError as error:
            log.warning(f"scheduled_posts: no written caption for {item.export_id} ({error}); the template is used")
            return None
    text = clean(answer)
    if text:
        await asyncio.to_thread(
            storage.put_bytes, written_caption_key(spec.name, item.export_id), text.encode(), "text/plain"
        )
    return text or None


def clean(answer: str) -> str:
    """One line of scene text: hashtags, wrapping quotes and any disclosure the model added are dropped
    (post_text.py puts back the one disclosure and the model's own hashtags)."""
    text = _HASHTAG.sub(" ", answer.replace("\n", " "))
    text = re.sub(r"\(?\bAI[- ]generated\b\)?", " ", text, flags=re.IGNORECASE)
    return " ".join(text.split()).strip(" \"'“”")
