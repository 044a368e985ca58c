"""The platform_exports asset: files, manifest.csv and index per batch and platform, checks, incrementality."""

from __future__ import annotations

import io
import json

import c2pa
import dagster as dg
import pytest
from PIL import Image

from modelcrew_assets.definitions import defs
from modelcrew_assets.handoffs import GeneratedBatch, GeneratedImage, PlatformExports, read_index, write_index
from modelcrew_assets.manifest import parse_manifest
from modelcrew_assets.platform_exports.assets import platform_exports
from modelcrew_assets.platform_exports.labels import TRAINED_ALGORITHMIC_MEDIA, read_digital_source_type, read_xmp_label
from modelcrew_assets.platform_exports.scheduler_csv import COLUMNS, read_manifest_csv
from modelcrew_assets.platform_exports.stage import export_batch, export_settings
from modelcrew_assets.resources.c2pa_signing import C2paSigningResource
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.storage_keys import manifest_key
from modelcrew_assets_tests.builders import manifest_text
from modelcrew_assets_tests.platform_export_images import encode, throwaway_signing_certificate

MODEL = "blondie"
PROMPT = "blondie, a woman sitting in a cafe, candid photo, soft window light"
EXPORT_ALL = (
    '\n[export]\nplatforms = ["instagram_feed", "instagram_square", "instagram_story", "tiktok"]\n'
    'watermark = "@blondie"\n'
)


def store_image(
    storage: StorageResource, key: str, image: Image.Image, dry_run: bool = False, aspect: str = ""
) -> GeneratedImage:
    put = storage.put_bytes(key, encode(image, "PNG"))
    return GeneratedImage(
        aspect=aspect,
        key=put.key,
        sha256=put.sha256,
        prompt=PROMPT,
        negative_prompt="blurry",
        seed=1,
        width=image.width,
        height=image.height,
        checkpoint_sha256="c" * 64,
        dry_run=dry_run,
    )


def generated_batch(storage: StorageResource, astronaut: Image.Image, images: int = 2) -> GeneratedBatch:
    """Odd images: the astronaut at 1024x1024; even ones: a flat 9:16 picture with no face."""
    items = tuple(
        store_image(
            storage,
            f"models/{MODEL}/generated_batches/b0001/{number:04d}.png",
            astronaut.resize((1024, 1024)) if number % 2 else Image.new("RGB", (768, 1344), (40, 90, 140)),
        )
        for number in range(1, images + 1)
    )
    batch = GeneratedBatch(model=MODEL, batch_id="b0001", images=items)
    write_index(storage, batch)
    return batch


def upload_manifest(storage: StorageResource, extra: str = "") -> None:
    storage.put_bytes(manifest_key(MODEL), manifest_text(MODEL, MODEL, extra).encode())


def materialize(
    instance: dg.DagsterInstance,
    storage: StorageResource,
    c2pa_signing: C2paSigningResource | None = None,
    **config,
):
    instance.add_dynamic_partitions("models", [MODEL])
    return dg.materialize(
        [platform_exports],
        partition_key=MODEL,
        instance=instance,
        resources={"storage": storage, "c2pa": c2pa_signing or C2paSigningResource()},
        run_config={"ops": {platform_exports.op.name: {"config": config}}},
    )


def materialization_metadata(result: dg.ExecuteInProcessResult) -> dict:
    return result.asset_materializations_for_node("platform_exports")[0].metadata


def test_definitions_include_platform_exports_with_its_checks():
    node = defs.get_repository_def().asset_graph.get(dg.AssetKey("platform_exports"))
    assert node.check_keys == {
        dg.AssetCheckKey(dg.AssetKey("platform_exports"), "exports_have_exact_platform_sizes"),
        dg.AssetCheckKey(dg.AssetKey("platform_exports"), "exports_are_labelled_as_ai_content"),
    }


def test_batch_is_exported_per_platform_with_manifest_csv_index_and_passing_checks(instance, storage, astronaut):
    upload_manifest(storage, EXPORT_ALL)
    generated_batch(storage, astronaut)
    result = materialize(instance, storage)

    index = read_index(storage, MODEL, PlatformExports)
    assert len(index.exports) == 8 and not index.rejected
    for export in index.exports:
        assert export.key.startswith(f"models/{MODEL}/platform_exports/b0001/{export.platform}/")
        data = storage.get_bytes(export.key)
        assert read_digital_source_type(data) == TRAINED_ALGORITHMIC_MEDIA == export.digital_source_type
    assert {export.crop for export in index.exports if export.source_key.endswith("0001.png")} == {"face"}

    rows = read_manifest_csv(storage.get_bytes(f"models/{MODEL}/platform_exports/b0001/tiktok/manifest.csv"))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 2
    first = rows[0]
    assert (first["platform"], first["width"], first["height"]) == ("tiktok", "1080", "1920")
    assert first["ai_generated"] == "true" and first["dry_run"] == "false" and first["prompt"] == PROMPT
    assert first["suggested_caption"] == "A woman sitting in a cafe, soft window light. (AI-generated)"
    assert first["hashtags"] == "#blondie #aigenerated #aiart"
    tiktok_export = next(e for e in index.exports if e.platform == "tiktok" and e.key.endswith(first["file"]))
    assert first["sha256"] == tiktok_export.sha256 == storage.content_sha256(tiktok_export.key)

    checks = {check.check_name: check.passed for check in result.get_asset_check_evaluations()}
    assert checks == {"exports_have_exact_platform_sizes": True, "exports_are_labelled_as_ai_content": True}
    metadata = materialization_metadata(result)
    assert metadata["exports_tiktok"].value == 2 and metadata["exports_instagram_square"].value == 2
    assert metadata["dagster/row_count"].value == 8 and metadata["images_rendered"].value == 2
    assert metadata["dagster/uri"].value.rstrip("/").endswith("platform_exports/b0001")
    assert metadata["preview"].value.startswith("![one export per platform](data:image/jpeg;base64,")
    assert metadata["preview_uri"].value == storage.uri(f"models/{MODEL}/platform_exports/b0001/preview.jpg")


def test_second_run_with_the_same_settings_renders_nothing_and_a_new_watermark_renders_again(
    instance, local_storage, astronaut
):
    upload_manifest(local_storage, EXPORT_ALL)
    generated_batch(local_storage, astronaut)
    first = materialize(instance, local_storage)
    keys = [export.key for export in read_index(local_storage, MODEL, PlatformExports).exports]
    modified = [local_storage.head(key).modified for key in keys]

    second = materialize(instance, local_storage)
    assert materialization_metadata(first)["images_rendered"].value == 2
    assert materialization_metadata(second)["images_rendered"].value == 0
    assert materialization_metadata(second)["images_reused"].value == 2
    assert [export.key for export in read_index(local_storage, MODEL, PlatformExports).exports] == keys
    assert [local_storage.head(key).modified for key in keys] == modified

    upload_manifest(local_storage, EXPORT_ALL.replace("@blondie", "@b2"))
    third = materialize(instance, local_storage)
    assert materialization_metadata(third)["images_rendered"].value == 2
    assert set(keys).isdisjoint(export.key for export in read_index(local_storage, MODEL, PlatformExports).exports)


def test_custom_platform_from_the_manifest_gets_its_own_folder_and_size(local_storage, astronaut):
    extra = '\n[export]\nplatforms = ["x_post"]\n[export.custom_platforms.x_post]\nwidth = 1600\nheight = 900\n'
    upload_manifest(local_storage, extra)
    batch = generated_batch(local_storage, astronaut, images=1)
    spec = parse_manifest(manifest_text(MODEL, MODEL, extra), "model.toml")
    settings = export_settings(local_storage, spec)
    (export,) = export_batch(local_storage, spec, batch, settings, dg.get_dagster_logger()).index.exports
    assert export.key.startswith(f"models/{MODEL}/platform_exports/b0001/x_post/")
    assert Image.open(io.BytesIO(local_storage.get_bytes(export.key))).size == (1600, 900)


def test_unknown_platform_fails_naming_the_manifest_and_the_choices(instance, local_storage, astronaut):
    upload_manifest(local_storage, '\n[export]\nplatforms = ["myspace"]\n')
    generated_batch(local_storage, astronaut, images=1)
    expected = r"uploads/blondie/model.toml: \[export\].platforms names 'myspace'.*instagram_feed"
    with pytest.raises(ValueError, match=expected):
        materialize(instance, local_storage)


def test_unusable_image_is_reported_and_the_rest_exported(instance, local_storage, astronaut):
    upload_manifest(local_storage)
    batch = generated_batch(local_storage, astronaut, images=2)
    local_storage.put_bytes(batch.images[1].key, b"not a png")
    result = materialize(instance, local_storage)
    index = read_index(local_storage, MODEL, PlatformExports)
    assert [item.key for item in index.rejected] == [batch.images[1].key]
    assert "not an image Pillow can read" in index.rejected[0].reason
    assert len(index.exports) == 2  # default platforms: instagram_feed and tiktok
    assert materialization_metadata(result)["images_rejected"].value == 1


def test_missing_generated_batch_says_which_stage_to_run_first(instance, local_storage):
    upload_manifest(local_storage)
    with pytest.raises(Exception, match="materialize generated_batches for partition 'blondie' first"):
        materialize(instance, local_storage)


def test_configured_c2pa_signing_is_applied_to_every_export_and_the_checks_still_pass(
    instance, local_storage, astronaut
):
    chain, key = throwaway_signing_certificate()
    upload_manifest(local_storage)
    generated_batch(local_storage, astronaut, images=1)
    result = materialize(instance, local_storage, C2paSigningResource(cert_chain_pem=chain, private_key_pem=key))
    assert materialization_metadata(result)["c2pa_signed"].value is True
    assert all(check.passed for check in result.get_asset_check_evaluations())
    for export in read_index(local_storage, MODEL, PlatformExports).exports:
        reader = c2pa.Reader("image/jpeg", io.BytesIO(local_storage.get_bytes(export.key)))
        assert reader.get_validation_state() in ("Valid", "Trusted")
    assert key not in json.dumps([str(value.value) for value in materialization_metadata(result).values()])


def test_tiny_dry_run_stand_in_images_are_exported_and_the_run_is_marked_dry_run(instance, local_storage):
    upload_manifest(local_storage)
    image = store_image(local_storage, f"models/{MODEL}/generated_batches/demo/0001.png", Image.new("RGB", (64, 64)))
    write_index(local_storage, GeneratedBatch(model=MODEL, batch_id="demo", images=(image,), dry_run=True))
    result = materialize(instance, local_storage, min_source_side=64)
    index = read_index(local_storage, MODEL, PlatformExports)
    assert index.dry_run and len(index.exports) == 2 and not index.rejected
    assert materialization_metadata(result)["dry_run"].value is True
    for export in index.exports:
        assert read_xmp_label(local_storage.get_bytes(export.key)) == "dry-run"
        [row] = read_manifest_csv(local_storage.get_bytes(export.key.rsplit("/", 1)[0] + "/manifest.csv"))
        assert row["dry_run"] == "true" and row["ai_generated"] == "true"


def test_each_platform_is_served_by_the_renders_made_at_its_aspect_and_others_only_by_crops_that_fit(
    instance, local_storage, astronaut
):
    upload_manifest(local_storage, '[export]\nplatforms = ["instagram_feed", "tiktok", "instagram_square"]\n')
    prefix = f"models/{MODEL}/generated_batches/b0001/"
    feed = store_image(local_storage, prefix + "0001.png", astronaut.resize((896, 1120)), aspect="4:5")
    vertical = store_image(local_storage, prefix + "0002.png", astronaut.resize((768, 1344)), aspect="9:16")
    write_index(local_storage, GeneratedBatch(model=MODEL, batch_id="b0001", images=(feed, vertical)))
    materialize(instance, local_storage)
    served = {(e.platform, e.source_key, e.fit) for e in read_index(local_storage, MODEL, PlatformExports).exports}
    assert {(p, s, f) for p, s, f in served if p != "instagram_square"} == {
        ("instagram_feed", feed.key, "native"),
        ("tiktok", vertical.key, "native"),
    }
    # No 1:1 render was made: the square takes the crops that keep the astronaut's face.
    assert {(s, f) for p, s, f in served if p == "instagram_square"} == {
        (feed.key, "cropped"),
        (vertical.key, "cropped"),
    }
