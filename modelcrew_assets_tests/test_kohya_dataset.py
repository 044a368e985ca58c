"""The kohya_dataset asset: layout, pairing, repeats folder, dataset.toml, versioning and checks."""

import hashlib
import io
import tomllib
import zipfile

import dagster as dg
import numpy as np
from PIL import Image

from modelcrew_assets.captions.assets import captions
from modelcrew_assets.handoffs import CaptionedImage, Captions, KohyaDataset, read_index, write_index
from modelcrew_assets.kohya_dataset.assets import kohya_dataset
from modelcrew_assets.resources.captioner import CaptionerResource
from modelcrew_assets.storage_keys import asset_prefix, manifest_key
from modelcrew_assets_tests.builders import manifest_text, store_swapped_faces, target_variants

MODEL = "blondie"
FOLDER = "img/30_blondie woman"


def distinct_images(count: int) -> list[Image.Image]:
    """Images no perceptual hash confuses: seeded noise, in a few aspect ratios."""
    sizes = [(96, 96), (64, 96), (96, 64)]
    return [
        Image.fromarray(np.random.default_rng(index).integers(0, 255, (h, w, 3), dtype=np.uint8))
        for index, (w, h) in ((index, sizes[index % 3]) for index in range(count))
    ]


def encoded(image: Image.Image, exif: Image.Exif | None = None, image_format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **({"exif": exif} if exif is not None else {}))
    return buffer.getvalue()


def captioned_input(storage, images: list[bytes], manifest_extra: str = "", caption_of=None, face_box=None) -> Captions:
    """What the captions stage hands over: images in storage and a Captions index pointing at them."""
    storage.put_bytes(manifest_key(MODEL), manifest_text(MODEL, MODEL, manifest_extra).encode())
    items = []
    for index, data in enumerate(images):
        sha = hashlib.sha256(data).hexdigest()
        key = f"{asset_prefix(MODEL, 'swapped_faces')}{sha}.img"
        storage.put_bytes(key, data)
        text = caption_of(index) if caption_of else f"blondie, a woman, photo number {index}"
        items.append(CaptionedImage(image_key=key, image_sha256=sha, caption=text, source="model", face_box=face_box))
    index = Captions(model=MODEL, prompt_version="test", items=tuple(items))
    write_index(storage, index)
    return index


def materialize(instance, storage, assets=(kohya_dataset,), **kwargs) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("models", [MODEL])
    resources = {"storage": storage, "captioner": CaptionerResource()}
    return dg.materialize(list(assets), partition_key=MODEL, instance=instance, resources=resources, **kwargs)


def metadata_of(result) -> dict:
    materialization = result.asset_materializations_for_node("kohya_dataset")[0]
    return {key: value.value for key, value in materialization.metadata.items()}


def checks_of(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


def unpacked(storage) -> tuple[KohyaDataset, zipfile.ZipFile]:
    index = read_index(storage, MODEL, KohyaDataset)
    return index, zipfile.ZipFile(io.BytesIO(storage.get_bytes(index.zip_key)))


def test_zip_pairs_every_image_with_its_caption_in_the_repeats_folder(storage, instance):
    source = captioned_input(storage, [encoded(image) for image in distinct_images(16)])

    result = materialize(instance, storage)

    index, archive = unpacked(storage)
    names = set(archive.namelist())
    images = sorted(name for name in names if name.endswith(".jpg"))
    assert len(images) == 16 and index.image_count == 16
    assert {name.rsplit("/", 1)[0] for name in images} == {FOLDER}
    assert index.image_folder == "30_blondie woman" and index.repeats == 30
    expected = {f"{FOLDER}/{item.image_sha256[:16]}.txt": item.caption + "\n" for item in source.items}
    assert {name: archive.read(name).decode() for name in names if name.endswith(".txt")} == expected
    assert all("_" not in name.rsplit("/", 1)[1] for name in images)  # kohya's face-crop stem rule
    assert names == {*images, *expected, "dataset.toml"}
    assert all(check.passed for check in checks_of(result).values())


def test_dataset_toml_is_a_kohya_dataset_config_for_the_unpacked_folder(local_storage, instance):
    captioned_input(local_storage, [encoded(image) for image in distinct_images(16)])

    materialize(instance, local_storage)

    index, archive = unpacked(local_storage)
    config = tomllib.loads(local_storage.get_bytes(index.config_key).decode())
    assert archive.read("dataset.toml").decode() == local_storage.get_bytes(index.config_key).decode()
    assert config["general"]["caption_extension"] == ".txt"
    dataset = config["datasets"][0]
    assert dataset["resolution"] == 1024 and dataset["batch_size"] == 1 and dataset["enable_bucket"] is True
    subset = dataset["subsets"][0]
    assert subset == {"image_dir": FOLDER, "num_repeats": 30, "class_tokens": "blondie woman"}
    assert any(name.startswith(subset["image_dir"] + "/") for name in archive.namelist())
    assert index.config_key == f"models/{MODEL}/kohya_dataset/{index.version}/dataset.toml"
    assert index.zip_key == f"models/{MODEL}/kohya_dataset/{index.version}/dataset.zip"


def test_images_are_upright_rgb_jpegs_without_metadata(local_storage, instance):
    wide = distinct_images(3)[2].resize((120, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    exif[0x013B] = "Photographer Name"  # Artist
    rgba = distinct_images(2)[1].convert("RGBA")
    captioned_input(local_storage, [encoded(wide, exif), encoded(rgba, image_format="PNG")])

    materialize(instance, local_storage, raise_on_error=False)  # two images: the count check fails the run

    _, archive = unpacked(local_storage)
    jpegs = [name for name in sorted(archive.namelist()) if name.endswith(".jpg")]
    outputs = [Image.open(io.BytesIO(archive.read(name))) for name in jpegs]
    assert sorted(image.size for image in outputs) == [(60, 120), (64, 96)]
    for image in outputs:
        assert image.format == "JPEG" and image.mode == "RGB"
        assert not image.getexif() and "exif" not in image.info and "icc_profile" not in image.info


def test_identical_inputs_give_the_same_version_and_no_reupload(local_storage, instance):
    images = [encoded(image) for image in distinct_images(6)]
    captioned_input(local_storage, images)
    first = metadata_of(materialize(instance, local_storage))
    index = read_index(local_storage, MODEL, KohyaDataset)
    stored = local_storage.head(index.zip_key)

    second = metadata_of(materialize(instance, local_storage))

    assert second["version"] == first["version"] and second["reused"] is True and first["reused"] is False
    assert local_storage.head(index.zip_key) == stored  # same size, same mtime: not written again
    captioned_input(local_storage, images, caption_of=lambda i: f"blondie, a woman, changed caption {i}")
    third = metadata_of(materialize(instance, local_storage))
    assert third["version"] != first["version"] and third["reused"] is False


def test_metadata_reports_repeats_epochs_steps_and_buckets(local_storage, instance):
    captioned_input(local_storage, [encoded(image) for image in distinct_images(20)])

    metadata = metadata_of(materialize(instance, local_storage))

    assert metadata["image_count"] == 20 and metadata["repeats"] == 30
    assert metadata["steps_per_epoch"] == 600 and metadata["epochs"] == 3 and metadata["max_train_steps"] == 1500
    assert metadata["warnings"] == "none"
    assert metadata["trainer_repeats"] == 75  # 20 x 75 = 1500: the worker trains one epoch of the budget
    assert "step 250 (epoch 0.42)" in metadata["checkpoints_at"]
    assert "| 1024x1024 | 7 |" in metadata["buckets"]
    assert "| 832x1216 | 7 |" in metadata["buckets"] and "| 1216x832 | 6 |" in metadata["buckets"]
    assert metadata["dagster/uri"].endswith("dataset.zip")
    assert metadata["preview"].startswith("![first 20 dataset images](data:image/jpeg;base64,")
    assert metadata["preview_uri"].endswith("/preview.jpg")


def test_too_few_images_fail_the_enough_images_check_and_a_few_more_only_warn(local_storage, instance):
    captioned_input(local_storage, [encoded(image) for image in distinct_images(4)])
    check = checks_of(materialize(instance, local_storage, raise_on_error=False))["dataset_has_enough_images"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR

    captioned_input(local_storage, [encoded(image) for image in distinct_images(8)])
    check = checks_of(materialize(instance, local_storage))["dataset_has_enough_images"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN


def test_near_duplicates_are_reported(local_storage, instance, astronaut):
    variants = target_variants(astronaut.resize((128, 128)), 11)  # variant 10 repeats variant 0's crop
    captioned_input(local_storage, [encoded(image) for image in [*variants, variants[3]]])

    result = materialize(instance, local_storage)

    check = checks_of(result)["dataset_has_no_near_duplicates"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["pairs"].value >= 1
    assert metadata_of(result)["exact_duplicates_dropped"] == 1
    assert read_index(local_storage, MODEL, KohyaDataset).image_count == 11


def test_captions_then_dataset_from_swapped_faces_end_to_end(s3_storage, instance, astronaut):
    store_swapped_faces(s3_storage, target_variants(astronaut, 5))

    result = materialize(instance, s3_storage, assets=(captions, kohya_dataset), raise_on_error=False)

    assert result.success
    _, archive = unpacked(s3_storage)
    texts = [archive.read(name).decode() for name in archive.namelist() if name.endswith(".txt")]
    assert len(texts) == 5 and all(text.startswith("blondie, a photo of a woman") for text in texts)


def test_face_crops_join_the_zip_with_close_up_captions_and_count_in_the_steps(local_storage, instance):
    photos = [encoded(image.resize((512, 512))) for image in distinct_images(4)]
    captioned_input(
        local_storage, photos, '\n[dataset]\nmin_photos = 1\nface_crops = "auto"\n', face_box=(200, 150, 80, 80)
    )
    result = materialize(instance, local_storage)
    metadata = metadata_of(result)
    index, archive = unpacked(local_storage)
    assert (index.photo_count, index.face_crop_count, index.image_count) == (4, 4, 8)
    assert metadata["steps_per_epoch"] == 8 * 30, "crops train like photos, so they are in the steps"
    crops = sorted(name for name in archive.namelist() if name.endswith("-face.jpg"))
    assert len(crops) == 4 and all(name.startswith(f"{FOLDER}/") for name in crops)
    assert archive.read(crops[0].replace(".jpg", ".txt")) == b"blondie, close-up portrait of a woman, face in focus\n"
    crop = Image.open(io.BytesIO(archive.read(crops[0])))
    assert crop.size == (256, 256), "2.5 x the 80 px face, raised to the 256 px smallest bucket"
    checks = checks_of(result)
    assert checks["every_image_has_its_caption_file"].passed
    assert checks["dataset_has_enough_images"].metadata["images"].value == 4, "crops are not extra photos"
    assert checks["dataset_has_no_near_duplicates"].passed, "a crop is not compared with its own photo"


def test_large_faces_get_no_crop_unless_always(local_storage, instance):
    photos = [encoded(image.resize((512, 512))) for image in distinct_images(2)]
    captioned_input(local_storage, photos, "\n[dataset]\nmin_photos = 1\n", face_box=(100, 100, 300, 300))
    materialize(instance, local_storage)
    assert read_index(local_storage, MODEL, KohyaDataset).face_crop_count == 0
    local_storage.put_bytes(
        manifest_key(MODEL),
        manifest_text(MODEL, MODEL, '\n[dataset]\nmin_photos = 1\nface_crops = "always"\n').encode(),
    )
    materialize(instance, local_storage)
    assert read_index(local_storage, MODEL, KohyaDataset).face_crop_count == 2
