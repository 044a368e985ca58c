"""The captioning prompt for likeness LoRAs, versioned: a new version recaptions, an unchanged one is cached.

Why it reads as it does: whatever a caption names, the LoRA learns as changeable and ties to those words;
whatever it leaves out is learned as part of the trigger word. So the caption describes what must stay
changeable (clothing, pose, framing, background, lighting, expression) and never the identity (face shape,
eye colour, hair, skin, age, ethnicity, body type), and never a name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CaptionPrompt:
    version: str
    system: str
    user: str  # {class_word} is filled in per model; it is part of the cache key with the version

    def user_text(self, class_word: str) -> str:
        return self.user.format(class_word=class_word)


LIKENESS_PROMPT = CaptionPrompt(
    version="likeness-v1",
    system=(
        "You write training captions for a likeness LoRA of one person. Describe only what should stay "
        "changeable when the LoRA is used: clothing and accessories, pose and gesture, camera framing and "
        "angle, background and setting, lighting, facial expression, and the kind of photo. Never describe "
        "the person's identity: no face shape, eye colour, hair colour or style, skin tone, age, ethnicity, "
        "body type or makeup, and never a name."
    ),
    user=(
        "Caption this photo as one line of short comma-separated phrases, at most 40 words, starting with "
        "'a {class_word}' (for example: a {class_word} wearing a red wool coat, standing on a city street, "
        "smiling, overcast daylight, eye-level shot). No sentences, no quotes, no preamble."
    ),
)
