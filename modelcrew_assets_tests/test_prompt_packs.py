import pytest

from modelcrew_assets.generated_batches.progress import BatchMismatchError, check_resumable, estimate
from modelcrew_assets.generated_batches.prompt_packs import (
    PromptPackError,
    derive_seed,
    image_key,
    parse_size,
    plan_batch,
    render_prompt,
    validate_batch_id,
)
from modelcrew_assets.handoffs import GeneratedImage
from modelcrew_assets.manifest import ManifestError, parse_manifest
from modelcrew_assets_tests.builders import manifest_text

SOURCE = "uploads/blondie/model.toml"


def spec_with(generation: str):
    return parse_manifest(manifest_text(extra="[generation]\n" + generation), SOURCE)


def test_trigger_class_word_and_named_placeholders_are_filled():
    spec = spec_with(
        'prompts = ["{trigger}, a {class_word} wearing {outfit}"]\nnegative_prompt = "{name} twin"\nimages = 1\n'
        '[generation.placeholders]\noutfit = "a red dress"\n'
    )
    (job,) = plan_batch(spec, "b1")
    assert job.prompt == "blondie, a woman wearing a red dress"
    assert job.negative_prompt == "blondie twin"


def test_unknown_placeholder_is_refused_at_manifest_parse_naming_it_and_the_prompt():
    with pytest.raises(ManifestError) as error:
        spec_with('prompts = ["{trigger} ok", "{trigger} in {outfitt}"]\n')
    message = str(error.value)
    assert SOURCE in message and "{outfitt}" in message and "prompts[1]" in message
    assert "'{trigger} in {outfitt}'" in message and "[generation.placeholders]" in message


@pytest.mark.parametrize("prompt", ["{trigger} {}", "{trigger.upper}", "{trigger} {", "{trigger[0]}"])
def test_malformed_placeholders_are_refused_naming_the_prompt(prompt):
    with pytest.raises(ManifestError, match=r"prompts\[0\]"):
        spec_with(f"prompts = [{prompt!r}]\n".replace("'", '"'))


def test_unknown_placeholder_in_negative_prompt_is_refused():
    with pytest.raises(ManifestError, match=r"negative_prompt .*\{style\}"):
        spec_with('negative_prompt = "{style}, blurry"\n')


def test_render_prompt_names_unknown_placeholder_and_prompt():
    with pytest.raises(PromptPackError, match=r"pack\[3\] 'a \{hat\}' uses unknown placeholder \{hat\}"):
        render_prompt("a {hat}", {"trigger": "x"}, "pack[3]")


def test_literal_braces_survive():
    assert render_prompt("{trigger} {{logo}}", {"trigger": "ohwx"}, "p") == "ohwx {logo}"


def test_placeholder_may_not_shadow_a_builtin():
    with pytest.raises(ManifestError, match=r"placeholders\.trigger"):
        spec_with('[generation.placeholders]\ntrigger = "other"\n')


def test_seeds_are_derived_from_model_batch_and_index():
    spec = spec_with("images = 6\n")
    first, again, other = plan_batch(spec, "b1"), plan_batch(spec, "b1"), plan_batch(spec, "b2")
    assert [job.seed for job in first] == [job.seed for job in again]
    assert len({job.seed for job in first}) == 6
    assert not {job.seed for job in first} & {job.seed for job in other}
    assert first[3].seed == derive_seed("blondie", "b1", 3) < 2**63


def test_given_seeds_are_used_once_per_prompt_and_platform_round():
    spec = spec_with('prompts = ["a {trigger}", "b {trigger}"]\nimages = 8\nseeds = [7, 9]\n')
    jobs = plan_batch(spec, "b1")
    assert [job.seed for job in jobs] == [7, 7, 7, 7, 9, 9, 9, 9]
    assert len({(job.prompt, job.platform, job.seed) for job in jobs}) == 8


def test_given_seeds_that_would_repeat_images_are_refused():
    with pytest.raises(ManifestError, match="only 4 distinct images"):
        spec_with('prompts = ["a {trigger}"]\nimages = 5\nseeds = [1, 2]\n')


def test_images_cycle_prompts_then_platforms_with_sdxl_bucket_sizes():
    spec = spec_with(
        'prompts = ["a {trigger}", "b {trigger}"]\nimages = 6\n'
        '[generation.aspects]\ninstagram_feed = "4:5"\ntiktok = "9:16"\nsquare = "1:1"\n'
    )
    jobs = plan_batch(spec, "b1")
    assert [(job.prompt[0], job.platform) for job in jobs] == [
        ("a", "instagram_feed"),
        ("b", "instagram_feed"),
        ("a", "tiktok"),
        ("b", "tiktok"),
        ("a", "square"),
        ("b", "square"),
    ]
    assert [(job.width, job.height) for job in jobs[::2]] == [(896, 1152), (768, 1344), (1024, 1024)]
    assert all(job.width % 64 == 0 and job.height % 64 == 0 for job in jobs)


def test_unknown_aspect_is_refused():
    with pytest.raises(ManifestError, match=r"\[generation\]\.aspects\.feed"):
        spec_with('[generation.aspects]\nfeed = "16:9"\n')


def test_sampler_settings_come_from_the_manifest():
    spec = spec_with('sampler = "euler_a"\nsteps = 20\ncfg = 4.5\nlora_weight = 0.7\nimages = 1\n')
    (job,) = plan_batch(spec, "b1")
    assert (job.sampler, job.steps, job.cfg, job.lora_weight) == ("euler_a", 20, 4.5, 0.7)


def test_manifest_samplers_are_the_ones_the_renderer_knows():
    from typing import get_args

    from modelcrew_assets.manifest import Sampler
    from modelcrew_assets.worker.jobs import SAMPLERS

    assert set(get_args(Sampler)) == set(SAMPLERS)
    with pytest.raises(ManifestError, match=r"\[generation\]\.sampler"):
        spec_with('sampler = "k_lms"\n')


def test_older_manifests_without_new_fields_still_parse():
    spec = parse_manifest(manifest_text(extra='[generation]\nimages = 3\nseeds = "auto"\n'), SOURCE)
    assert spec.generation.max_images is None and spec.generation.steps == 30


@pytest.mark.parametrize("batch_id", ["", "../x", "a/b", "x" * 65, "-lead"])
def test_bad_batch_ids_are_refused(batch_id):
    with pytest.raises(PromptPackError, match="batch id"):
        validate_batch_id(batch_id)


def test_size_override_is_checked():
    assert parse_size("64x80") == (64, 80)
    with pytest.raises(PromptPackError, match="multiples of 8"):
        parse_size("65x80")


def test_resume_refuses_images_made_with_other_settings():
    spec = spec_with("images = 2\n")
    jobs = plan_batch(spec, "b1")
    job = jobs[0]
    record = GeneratedImage(
        key=image_key("blondie", "b1", 0),
        sha256="0" * 64,
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        seed=job.seed,
        width=job.width,
        height=job.height,
        checkpoint_sha256="c" * 64,
        index=0,
        sampler=job.sampler,
        steps=job.steps,
        cfg=job.cfg,
        lora_weight=job.lora_weight,
    )
    check_resumable("b1", jobs, {0: record}, "c" * 64)
    with pytest.raises(BatchMismatchError, match=r"batch 'b1': 1 stored image.*0000\.png.*new batch_id"):
        check_resumable("b1", jobs, {0: record}, "d" * 64)


def test_estimate_uses_measured_speed_when_known():
    jobs = plan_batch(spec_with("images = 10\n"), "b1")
    default = estimate(jobs, None, 1.0)
    measured = estimate(jobs, 4.0, 1.0)
    assert measured.gpu_minutes == pytest.approx((180 + 40) / 60)
    assert measured.cost_usd == pytest.approx(220 / 3600)
    assert "measured" in measured.describe() and "default" in default.describe()
    assert estimate([], None, 1.0).cost_usd == 0
