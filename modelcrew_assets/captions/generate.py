"""Where each caption comes from: a hand-written file, the captioning model (cached), or the template."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from dagster import get_dagster_logger

from modelcrew_assets.captions.prompt import CaptionPrompt
from modelcrew_assets.captions.text import normalize_caption, template_caption
from modelcrew_assets.face_detection import largest_face
from modelcrew_assets.handoffs import CaptionedImage, SwappedFace
from modelcrew_assets.imaging import decode_image
from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.resources.captioner import CaptionServiceResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.storage_keys import asset_prefix, hand_captions_prefix


class CaptioningError(RuntimeError):
    """Some images got no caption from the endpoint; the ones that did are cached."""


@dataclass(frozen=True)
class CaptionRun:
    items: tuple[CaptionedImage, ...]
    from_cache: int
    unmatched_hand_captions: tuple[str, ...]


def caption_key(model: str, image_sha256: str) -> str:
    return f"{asset_prefix(model, 'captions')}{image_sha256}.txt"


def cache_key(model: str, image_sha256: str, prompt: CaptionPrompt, caption_model: str, class_word: str) -> str:
    """The model's answer depends on the image, the prompt (version and class word) and the model asked."""
    identity = "\n".join((image_sha256, prompt.version, caption_model, class_word))
    return f"{asset_prefix(model, 'captions')}cache/{hashlib.sha256(identity.encode()).hexdigest()}.json"


def read_hand_captions(storage: StorageResource, model: str) -> dict[str, str]:
    """uploads/<model>/captions/<stem>.txt by stem."""
    captions = {}
    for obj in storage.list(hand_captions_prefix(model)):
        path = PurePosixPath(obj.key)
        if path.suffix != ".txt" or path.name.startswith("."):
            continue
        try:
            captions[path.stem] = storage.get_bytes(obj.key).decode("utf-8")
        except UnicodeDecodeError:
            raise CaptioningError(f"{obj.key}: not UTF-8 text; save it as UTF-8 and upload it again") from None
    return captions


def build_captions(
    storage: StorageResource,
    captioner: CaptionServiceResource,
    spec: ModelSpec,
    images: Sequence[SwappedFace],
    prompt: CaptionPrompt,
) -> CaptionRun:
    """One caption per image, hand-written first, then the model's (or the template without an endpoint)."""
    trigger, class_word = spec.trigger, spec.model.class_word
    hand = read_hand_captions(storage, spec.name)
    by_stem = {PurePosixPath(image.target_key).stem: image for image in images}
    hand_written = {by_stem[stem].sha256: text for stem, text in hand.items() if stem in by_stem}
    rest = [image for image in images if image.sha256 not in hand_written]

    from_cache = 0
    raw: dict[str, str] = {}
    if captioner.enabled and rest:
        raw, from_cache = asyncio.run(_ask_model(storage, captioner, spec, rest, prompt))

    items = []
    for image in images:
        if image.sha256 in hand_written:
            caption, source = normalize_caption(hand_written[image.sha256], trigger, class_word), "hand"
        elif image.sha256 in raw:
            caption, source = normalize_caption(raw[image.sha256], trigger, class_word), "model"
        else:
            face_box = image.face_box or _detect_face(storage, image)
            caption = template_caption(trigger, class_word, image.width, image.height, face_box)
            source = "template"
        items.append(
            CaptionedImage(
                image_key=image.key, image_sha256=image.sha256, caption=caption, source=source, face_box=image.face_box
            )
        )
    return CaptionRun(tuple(items), from_cache, tuple(sorted(set(hand) - set(by_stem))))


def _detect_face(storage: StorageResource, image: SwappedFace) -> tuple[int, int, int, int] | None:
    box = largest_face(decode_image(storage.get_bytes(image.key), image.key))
    return box.as_tuple() if box else None


async def _ask_model(
    storage: StorageResource,
    captioner: CaptionServiceResource,
    spec: ModelSpec,
    images: Sequence[SwappedFace],
    prompt: CaptionPrompt,
) -> tuple[dict[str, str], int]:
    """Raw answers by image sha256, and how many came from the cache. Each answer is cached the moment it
    arrives, so a failed or cancelled run pays only for the images still missing when it is re-run."""
    class_word = spec.model.class_word
    instruction = prompt.user_text(class_word)
    log = get_dagster_logger()

    async with captioner.session() as session:
        caption_model = session.model
        # Prepare at most two batches ahead of the requests in flight: bounded memory, no idle connections.
        ahead = asyncio.Semaphore(session.max_concurrency * 2)

        async def one(image: SwappedFace) -> tuple[str, bool]:
            key = cache_key(spec.name, image.sha256, prompt, caption_model, class_word)
            async with ahead:
                cached = await asyncio.to_thread(_read_cached, storage, key)
                if cached is not None:
                    return cached, True
                data = await asyncio.to_thread(storage.get_bytes, image.key)
                answer = await session.caption(data, image.key, prompt.system, instruction)
                record = _cache_record(image, prompt, caption_model, class_word, answer)
                await asyncio.to_thread(storage.put_bytes, key, record, "application/json")
                return answer, False

        results = await asyncio.gather(*(one(image) for image in images), return_exceptions=True)

    answers, failures, from_cache = {}, [], 0
    for image, result in zip(images, results, strict=True):
        if isinstance(result, BaseException):
            failures.append(f"{image.key} (from {image.target_key}): {result}")
        else:
            answers[image.sha256] = result[0]
            from_cache += result[1]
    if failures:
        for failure in failures:
            log.error(f"captions: {failure}")
        raise CaptioningError(
            f"captions for {spec.name}: {len(failures)} of {len(images)} images got no caption from "
            f"{caption_model} (first: {failures[0]}); the {len(answers)} others are cached, so re-running "
            "asks only for the missing ones. Check the endpoint, or add hand captions for these images."
        )
    return answers, from_cache


def _read_cached(storage: StorageResource, key: str) -> str | None:
    try:
        return json.loads(storage.get_bytes(key))["raw"]
    except KeyError:
        return None


def _cache_record(image: SwappedFace, prompt: CaptionPrompt, caption_model: str, class_word: str, raw: str) -> bytes:
    record: Mapping[str, str] = {
        "image_key": image.key,
        "image_sha256": image.sha256,
        "prompt_version": prompt.version,
        "caption_model": caption_model,
        "class_word": class_word,
        "raw": raw,
    }
    return json.dumps(record, indent=2).encode()
