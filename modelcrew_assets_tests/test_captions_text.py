"""The caption text rules, as pure functions: trigger first and only there, CLIP window, template captions."""

from modelcrew_assets.captions.text import (
    CLIP_TOKEN_WINDOW,
    clip_token_count,
    normalize_caption,
    starts_with_trigger_once,
    template_caption,
)


def test_trigger_in_the_middle_moves_to_the_front_exactly_once():
    caption = normalize_caption("a woman in a red coat, blondie smiling at the camera", "blondie", "woman")
    assert caption == "blondie, a woman in a red coat, smiling at the camera"
    assert starts_with_trigger_once(caption, "blondie")


def test_trigger_in_another_case_or_possessive_is_stripped_but_longer_words_are_kept():
    raw = "BLONDIE, a woman holding Blondie's bag next to a blondiesque poster"
    caption = normalize_caption(raw, "blondie", "woman")
    assert caption == "blondie, a woman holding bag next to a blondiesque poster"


def test_model_preamble_quotes_and_line_breaks_become_one_line():
    caption = normalize_caption('"a woman sitting on a bench,\n\nautumn park"', "blondie", "woman")
    assert caption == "blondie, a woman sitting on a bench, autumn park"


def test_over_long_caption_is_trimmed_into_the_clip_window_at_a_comma():
    raw = ", ".join(f"detail number {index} of the scene" for index in range(40))
    caption = normalize_caption(raw, "blondie", "woman")
    assert clip_token_count(caption) <= CLIP_TOKEN_WINDOW
    assert clip_token_count(caption) > CLIP_TOKEN_WINDOW - 10
    assert caption.startswith("blondie, detail number 0 of the scene, ")
    assert caption.endswith("of the scene")


def test_tokens_are_counted_with_clip_bpe_not_words():
    # A made-up trigger is several BPE tokens; punctuation counts as tokens too.
    assert clip_token_count("zxqvbrt") > 1
    assert clip_token_count("a photo, of a woman.") == 7


def test_answer_that_was_only_the_trigger_gets_the_template_phrase():
    assert normalize_caption("Blondie.", "blondie", "woman") == "blondie, a photo of a woman"


def test_trigger_rule_rejects_missing_or_repeated_trigger():
    assert not starts_with_trigger_once("a woman, blondie", "blondie")
    assert not starts_with_trigger_once("blondie, a photo of blondie", "blondie")
    assert starts_with_trigger_once("blondie, a photo of a woman", "blondie")


def test_template_caption_reads_orientation_and_framing_from_the_face_box():
    assert (
        template_caption("blondie", "woman", 800, 1200, (300, 200, 400, 420))
        == "blondie, a photo of a woman, close-up portrait, portrait orientation"
    )
    assert (
        template_caption("blondie", "woman", 1600, 900, (700, 100, 120, 130))
        == "blondie, a photo of a woman, upper body shot, landscape orientation"
    )
    assert template_caption("blondie", "woman", 1000, 1000, None) == "blondie, a photo of a woman, square format"
