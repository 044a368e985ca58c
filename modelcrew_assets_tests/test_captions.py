"""The captions asset against the fake OpenAI-compatible endpoint, from a SwappedFaces index built here."""

import dataclasses

import dagster as dg
import pytest

import modelcrew_assets.captions.assets as caption_assets
from modelcrew_assets.captions.assets import captions
from modelcrew_assets.captions.text import CLIP_TOKEN_WINDOW, clip_token_count, starts_with_trigger_once
from modelcrew_assets.handoffs import Captions, read_index
from modelcrew_assets.resources.captioner import CaptionerResource, SimulatedCaptionerResource
from modelcrew_assets.storage_keys import asset_prefix, hand_captions_prefix, manifest_key
from modelcrew_assets_tests.builders import manifest_text, store_swapped_faces, target_variants
from modelcrew_assets_tests.fakes.openai_compatible import (
    FAKE_MODEL,
    FakeOpenAICompatible,
    caption,
    malformed_json,
    server_error,
    too_many_requests,
)

MODEL = "blondie"


def live_captioner(fake: FakeOpenAICompatible, **overrides) -> CaptionerResource:
    settings = dict(base_url=fake.base_url, api_key=fake.api_key, model=FAKE_MODEL, retry_base_delay_s=0.01)
    return CaptionerResource(**{**settings, **overrides})


def materialize_captions(instance, storage, captioner, model: str = MODEL) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("models", [model])
    return dg.materialize(
        [captions], partition_key=model, instance=instance, resources={"storage": storage, "captioner": captioner}
    )


def metadata_of(result: dg.ExecuteInProcessResult) -> dict:
    return result.asset_materializations_for_node("captions")[0].metadata


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {evaluation.check_name: evaluation.passed for evaluation in result.get_asset_check_evaluations()}


def test_model_captions_put_the_trigger_first_once_and_fit_the_clip_window(storage, astronaut, instance, fake_openai):
    store_swapped_faces(storage, target_variants(astronaut, 4))
    fake_openai.script(
        caption("a woman in a spacesuit, Blondie smiling at the camera"),
        caption("BLONDIE, a woman holding a helmet, blondie's badge visible"),
        caption(", ".join(f"tiny detail number {index}" for index in range(60))),
    )

    result = materialize_captions(instance, storage, live_captioner(fake_openai))

    index = read_index(storage, MODEL, Captions)
    captions_text = [item.caption for item in index.items]
    assert all(starts_with_trigger_once(text, "blondie") for text in captions_text)
    assert all(clip_token_count(text) <= CLIP_TOKEN_WINDOW for text in captions_text)
    assert "blondie, a woman in a spacesuit, smiling at the camera" in captions_text
    assert "blondie, a woman holding a helmet, badge visible" in captions_text
    assert {item.source for item in index.items} == {"model"}
    stored = storage.get_bytes(f"{asset_prefix(MODEL, 'captions')}{index.items[0].image_sha256}.txt").decode()
    assert stored == index.items[0].caption + "\n"
    assert check_results(result) == dict.fromkeys(
        ["captions_start_with_trigger", "every_image_has_a_caption", "captions_fit_token_window"], True
    )
    metadata = metadata_of(result)
    assert metadata["from_model"].value == 4 and metadata["from_template"].value == 0
    assert metadata["prompt_version"].value == caption_assets.LIKENESS_PROMPT.version
    assert metadata["preview"].value.count("data:image/jpeg;base64,") == 4
    assert len(fake_openai.requests) == 4
    assert fake_openai.requests[0]["model"] == FAKE_MODEL


def test_429_500_and_malformed_answers_are_retried_until_every_image_has_a_caption(
    local_storage, astronaut, instance, fake_openai
):
    store_swapped_faces(local_storage, target_variants(astronaut, 3))
    fake_openai.script(too_many_requests(), server_error(), malformed_json(), server_error())

    result = materialize_captions(instance, local_storage, live_captioner(fake_openai))

    assert result.success
    index = read_index(local_storage, MODEL, Captions)
    assert [item.source for item in index.items] == ["model"] * 3
    assert len(fake_openai.requests) == 3 + 4


def test_an_image_that_never_gets_a_caption_fails_naming_it_and_the_others_stay_cached(
    local_storage, astronaut, instance, fake_openai
):
    store_swapped_faces(local_storage, target_variants(astronaut, 2))
    captioner = live_captioner(fake_openai, max_concurrency=1, max_attempts=2)
    fake_openai.script(caption("a woman waving"), server_error(), server_error())

    with pytest.raises(Exception, match=r"1 of 2 images got no caption .*target-00[01]\.jpg.*HTTP 500"):
        materialize_captions(instance, local_storage, captioner)

    asked = len(fake_openai.requests)
    materialize_captions(instance, local_storage, captioner)
    assert len(fake_openai.requests) == asked + 1


def test_unchanged_prompt_version_is_cached_and_a_new_version_recaptions(
    local_storage, astronaut, instance, fake_openai, monkeypatch
):
    store_swapped_faces(local_storage, target_variants(astronaut, 3))
    captioner = live_captioner(fake_openai)
    materialize_captions(instance, local_storage, captioner)
    assert len(fake_openai.requests) == 3

    second = materialize_captions(instance, local_storage, captioner)
    assert len(fake_openai.requests) == 3
    assert metadata_of(second)["from_cache"].value == 3

    new_prompt = dataclasses.replace(caption_assets.LIKENESS_PROMPT, version="likeness-test-v2")
    monkeypatch.setattr(caption_assets, "LIKENESS_PROMPT", new_prompt)
    third = materialize_captions(instance, local_storage, captioner)
    assert len(fake_openai.requests) == 6
    assert read_index(local_storage, MODEL, Captions).prompt_version == "likeness-test-v2"
    assert metadata_of(third)["from_cache"].value == 0


def test_a_different_caption_model_is_not_served_from_the_cache(local_storage, astronaut, instance, fake_openai):
    store_swapped_faces(local_storage, target_variants(astronaut, 2))
    materialize_captions(instance, local_storage, live_captioner(fake_openai))
    materialize_captions(instance, local_storage, live_captioner(fake_openai, model="another-vision-model"))
    assert [request["model"] for request in fake_openai.requests[2:]] == ["another-vision-model"] * 2


def test_hand_written_captions_win_and_still_get_the_trigger_rule(local_storage, astronaut, instance, fake_openai):
    store_swapped_faces(local_storage, target_variants(astronaut, 3))
    prefix = hand_captions_prefix(MODEL)
    local_storage.put_bytes(f"{prefix}target-001.txt", b"Blondie on a rooftop at night, neon lights\n")
    local_storage.put_bytes(f"{prefix}no-such-photo.txt", b"ignored")

    result = materialize_captions(instance, local_storage, live_captioner(fake_openai))

    items = read_index(local_storage, MODEL, Captions).items
    assert items[1].source == "hand"
    assert items[1].caption == "blondie, on a rooftop at night, neon lights"
    assert [items[0].source, items[2].source] == ["model", "model"]
    assert len(fake_openai.requests) == 2
    metadata = metadata_of(result)
    assert metadata["from_hand"].value == 1
    assert metadata["unmatched_hand_captions"].value == "no-such-photo"


def test_without_an_endpoint_template_captions_are_written_and_labelled(storage, astronaut, instance):
    store_swapped_faces(storage, [astronaut, astronaut.resize((1024, 512))])

    result = materialize_captions(instance, storage, CaptionerResource())

    items = read_index(storage, MODEL, Captions).items
    assert [item.source for item in items] == ["template", "template"]
    assert items[0].caption.startswith("blondie, a photo of a woman, ")
    assert "square format" in items[0].caption
    assert "landscape orientation" in items[1].caption
    metadata = metadata_of(result)
    assert metadata["template_captions"].value is True
    assert metadata["from_template"].value == 2
    assert all(check_results(result).values())


def test_dry_run_never_calls_the_endpoint_even_when_one_is_configured(local_storage, astronaut, instance, fake_openai):
    store_swapped_faces(local_storage, target_variants(astronaut, 2))

    result = materialize_captions(instance, local_storage, SimulatedCaptionerResource())

    assert fake_openai.requests == []
    assert {item.source for item in read_index(local_storage, MODEL, Captions).items} == {"template"}
    assert metadata_of(result)["dry_run"].value is True
    assert read_index(local_storage, MODEL, Captions).dry_run


def test_captions_before_swapped_faces_says_which_stage_to_run(local_storage, instance):
    local_storage.put_bytes(manifest_key(MODEL), manifest_text(MODEL, MODEL).encode())
    with pytest.raises(Exception, match="materialize swapped_faces for partition 'blondie' first"):
        materialize_captions(instance, local_storage, CaptionerResource())
