"""Text that goes with a post: a suggested caption from the prompt, hashtags, and the XMP label."""

from __future__ import annotations

import re

from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.platform_exports.labels import DRY_RUN_LABEL, AiLabel

# Prompt fragments about the camera or render quality, not about the scene: left out of captions.
_JARGON = re.compile(
    r"\b(photo|photograph|\d+mm|\d+k|dslr|bokeh|masterpiece|best quality|highly detailed|hdr|raw|"
    r"sharp focus|film grain|lens|f/\d)",
    re.IGNORECASE,
)
_HASHTAG_UNSAFE = re.compile(r"[^0-9A-Za-z_]")
AI_DISCLOSURE_TAGS = ("#aigenerated", "#aiart")


def suggested_caption(prompt: str, spec: ModelSpec) -> str:
    """The scene the prompt describes, in words a caption can use, ending with an AI disclosure."""
    trigger = spec.trigger.lower()
    fragments = [part.strip() for part in prompt.split(",")]
    scene = [part for part in fragments if part and part.lower() != trigger and not _JARGON.search(part)]
    text = ", ".join(scene[:3]).replace(spec.trigger, spec.name).strip() or f"New post by {spec.name}"
    return f"{text[0].upper()}{text[1:]}. (AI-generated)"


def hashtags(spec: ModelSpec) -> tuple[str, ...]:
    own = [_HASHTAG_UNSAFE.sub("", spec.name)]
    configured = [_HASHTAG_UNSAFE.sub("", tag.lstrip("#")) for tag in spec.export.hashtags]
    tags = [f"#{tag}" for tag in [*own, *configured] if tag]
    return tuple(dict.fromkeys([*tags, *AI_DISCLOSURE_TAGS]))


def generated_label(spec: ModelSpec, prompt: str, digital_source_type: str, dry_run: bool = False) -> AiLabel:
    creator = spec.export.creator or spec.name
    description = f"AI-generated image of {spec.name}, a virtual persona, made with modelcrew. Prompt: {prompt}"
    keywords = ("AI-generated", "synthetic media", spec.name, *(tag.lstrip("#") for tag in hashtags(spec)))
    if dry_run:
        description = f"DRY RUN: simulated render, not for posting. {description}"
        keywords = (*keywords, DRY_RUN_LABEL)
    return AiLabel(digital_source_type, creator, description, tuple(dict.fromkeys(keywords)), dry_run)
