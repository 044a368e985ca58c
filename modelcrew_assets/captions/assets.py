"""The captions asset: one training caption per swapped image, trigger word first, and the checks on them."""

from collections import Counter

import dagster as dg

from modelcrew_assets.captions.generate import build_captions, caption_key
from modelcrew_assets.captions.prompt import LIKENESS_PROMPT
from modelcrew_assets.captions.text import CLIP_TOKEN_WINDOW, clip_token_count, starts_with_trigger_once
from modelcrew_assets.handoffs import (
    CaptionedImage,
    Captions,
    SwappedFaces,
    read_index,
    read_model_spec,
    write_index,
)
from modelcrew_assets.imaging import decode_image, markdown_image
from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.resources.captioner import CaptionServiceResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.storage_keys import asset_prefix

PREVIEW_ROWS = 20
# Check names, spelled once (the spec and the result must agree), and what each means in the UI.
STARTS_WITH_TRIGGER = "captions_start_with_trigger"
EVERY_IMAGE_CAPTIONED = "every_image_has_a_caption"
FITS_TOKEN_WINDOW = "captions_fit_token_window"
CHECKS = {
    STARTS_WITH_TRIGGER: "every caption begins with the model's trigger word, which the LoRA learns",
    EVERY_IMAGE_CAPTIONED: "every usable swapped photo has a non-empty caption stored beside it",
    FITS_TOKEN_WINDOW: "no caption is longer than CLIP's 75-token window (kohya would cut the rest)",
}


@dg.asset(
    partitions_def=models_partitions,
    deps=[SwappedFaces.ASSET],
    group_name="training_data",
    kinds={"openai"},
    check_specs=[
        dg.AssetCheckSpec(name, asset=Captions.ASSET, description=meaning) for name, meaning in CHECKS.items()
    ],
)
def captions(
    context: dg.AssetExecutionContext, storage: StorageResource, captioner: CaptionServiceResource
) -> dg.MaterializeResult:
    """One training caption per swapped image: trigger word first, identity left to the trigger."""
    model = context.partition_key
    spec = read_model_spec(storage, model)
    swapped = read_index(storage, model, SwappedFaces)
    warning = captioner.template_warning()
    if warning:
        context.log.warning(warning)
    # Only the photos the quality gate let through; the excluded ones are listed in swapped_faces' verdicts.
    run = build_captions(storage, captioner, spec, swapped.usable_images, LIKENESS_PROMPT)
    for item in run.items:
        storage.put_bytes(caption_key(model, item.image_sha256), (item.caption + "\n").encode(), "text/plain")
    dry_run = captioner.simulated or swapped.dry_run  # made by, or from, a simulated provider
    index = Captions(model=model, dry_run=dry_run, prompt_version=LIKENESS_PROMPT.version, items=run.items)
    write_index(storage, index)
    if run.unmatched_hand_captions:
        context.log.warning(
            f"captions: hand captions with no matching target photo were ignored: "
            f"{', '.join(run.unmatched_hand_captions)} (name them like the target photo, e.g. a.jpg -> a.txt)"
        )

    sources = Counter(item.source for item in run.items)
    metadata = {
        "dagster/uri": dg.MetadataValue.path(storage.uri(asset_prefix(model, Captions.ASSET))),
        "dagster/row_count": len(run.items),
        "prompt_version": LIKENESS_PROMPT.version,
        "caption_model": captioner.caption_model or "none (template captions)",
        "from_model": sources["model"],
        "from_hand": sources["hand"],
        "from_template": sources["template"],
        "template_captions": sources["template"] > 0,
        "from_cache": run.from_cache,
        "trigger": spec.trigger,
        "excluded_photos": len(swapped.images) - len(swapped.usable_images),
        "preview": dg.MetadataValue.md(preview_table(storage, run.items[:PREVIEW_ROWS])),
        "dry_run": dry_run,
    }
    if run.unmatched_hand_captions:
        metadata["unmatched_hand_captions"] = ", ".join(run.unmatched_hand_captions)
    return dg.MaterializeResult(metadata=metadata, check_results=caption_checks(storage, spec, swapped, run.items))


def caption_checks(
    storage: StorageResource, spec: ModelSpec, swapped: SwappedFaces, items: tuple[CaptionedImage, ...]
) -> list[dg.AssetCheckResult]:
    without_trigger = [item.image_key for item in items if not starts_with_trigger_once(item.caption, spec.trigger)]
    captioned = {item.image_sha256 for item in items if item.caption.strip()}
    stored = {item.image_sha256 for item in items if storage.exists(caption_key(spec.name, item.image_sha256))}
    missing = [image.key for image in swapped.usable_images if image.sha256 not in captioned & stored]
    tokens = {item.image_key: clip_token_count(item.caption) for item in items}
    too_long = [key for key, count in tokens.items() if count > CLIP_TOKEN_WINDOW]
    return [
        dg.AssetCheckResult(
            check_name=STARTS_WITH_TRIGGER,
            passed=not without_trigger,
            metadata={"trigger": spec.trigger, "offending": ", ".join(without_trigger[:20]) or "none"},
        ),
        dg.AssetCheckResult(
            check_name=EVERY_IMAGE_CAPTIONED,
            passed=not missing,
            metadata={"images": len(swapped.usable_images), "missing": ", ".join(missing[:20]) or "none"},
        ),
        dg.AssetCheckResult(
            check_name=FITS_TOKEN_WINDOW,
            passed=not too_long,
            metadata={
                "window": CLIP_TOKEN_WINDOW,
                "max_tokens": max(tokens.values(), default=0),
                "too_long": ", ".join(too_long[:20]) or "none",
            },
        ),
    ]


def preview_table(storage: StorageResource, items: tuple[CaptionedImage, ...]) -> str:
    """Thumbnail, caption and source of each item: what a person reads to judge the captions."""
    rows = ["| image | caption | source |", "| --- | --- | --- |"]
    for item in items:
        thumb = markdown_image(decode_image(storage.get_bytes(item.image_key), item.image_key), "image", 96, 70)
        rows.append(f"| {thumb} | {item.caption.replace('|', '/')} | {item.source} |")
    return "\n".join(rows)
