"""Caption text rules, pure: the trigger word first and only there, the CLIP token window, template captions.

Tokens are counted with CLIP's own BPE (instant-clip-tokenizer, MIT, vocabulary inside the wheel): a word
count is not an upper bound, because CLIP splits rare words (and made-up trigger words) into several tokens.
"""

from __future__ import annotations

import re
from functools import lru_cache

from instant_clip_tokenizer import Tokenizer

# CLIP's context is 77 tokens including its start and end tokens; kohya trains on 75 by default.
CLIP_TOKEN_WINDOW = 75

_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")
_REPEATED_COMMAS = re.compile(r"(?:,\s*){2,}")
_EDGE_PUNCT = " ,;:.-"
_WRAPPING_QUOTES = "\"'`“”‘’"


@lru_cache(maxsize=1)
def _tokenizer() -> Tokenizer:
    return Tokenizer()


def clip_token_count(text: str) -> int:
    """Tokens CLIP's text encoder sees for this text, without its start and end tokens."""
    return len(_tokenizer().encode(text))


def _trigger_pattern(trigger: str) -> re.Pattern[str]:
    # Whole word, any case, with a possessive ('s) if the model wrote one.
    return re.compile(rf"(?<![A-Za-z0-9_]){re.escape(trigger)}(?:['’]s)?(?![A-Za-z0-9_])", re.IGNORECASE)


def _tidy(text: str) -> str:
    text = _SPACES.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _REPEATED_COMMAS.sub(", ", text)
    return text.strip(_EDGE_PUNCT + " ").strip()


def caption_body(raw: str, trigger: str) -> str:
    """The model's text as one line, without wrapping quotes and without any copy of the trigger word."""
    text = _SPACES.sub(" ", raw).strip().strip(_WRAPPING_QUOTES).strip()
    return _tidy(_trigger_pattern(trigger).sub(" ", text))


def normalize_caption(raw: str, trigger: str, class_word: str, window: int = CLIP_TOKEN_WINDOW) -> str:
    """`<trigger>, <body>` with the trigger exactly once, first, and the whole within the token window.

    Trimming cuts at the last comma that fits (a caption is a list of phrases), else at a word boundary.
    An answer that is empty once the trigger is removed becomes the template's first phrase.
    """
    body = caption_body(raw, trigger) or f"a photo of a {class_word}"
    caption = f"{trigger}, {body}"
    if clip_token_count(caption) <= window:
        return caption
    words = body.split(" ")
    fitting = 0
    while fitting < len(words) and clip_token_count(f"{trigger}, {' '.join(words[: fitting + 1])}") <= window:
        fitting += 1
    kept = " ".join(words[:fitting])
    if "," in kept:
        kept = kept[: kept.rindex(",")]
    return f"{trigger}, {_tidy(kept) or f'a photo of a {class_word}'}"


def starts_with_trigger_once(caption: str, trigger: str) -> bool:
    """The rule every caption must meet: begins `<trigger>, ` and names the trigger nowhere else."""
    return caption.startswith(f"{trigger}, ") and len(_trigger_pattern(trigger).findall(caption)) == 1


def framing(face_box: tuple[int, int, int, int] | None, height: int) -> str | None:
    """Shot type from how much of the frame's height the face takes; None when there is no face box."""
    if face_box is None or height <= 0:
        return None
    share = face_box[3] / height
    if share >= 0.3:
        return "close-up portrait"
    if share >= 0.12:
        return "upper body shot"
    return "full body shot"


def orientation(width: int, height: int) -> str:
    if width > height * 1.1:
        return "landscape orientation"
    if height > width * 1.1:
        return "portrait orientation"
    return "square format"


def template_caption(
    trigger: str, class_word: str, width: int, height: int, face_box: tuple[int, int, int, int] | None
) -> str:
    """What can be said without a captioning model: the class word, framing and orientation."""
    parts = [f"a photo of a {class_word}", framing(face_box, height), orientation(width, height)]
    return f"{trigger}, " + ", ".join(part for part in parts if part)


def close_up_caption(trigger: str, class_word: str) -> str:
    """The caption of a face crop: the trigger, then the close-up wording that tells it from the photo."""
    return f"{trigger}, close-up portrait of a {class_word}, face in focus"
