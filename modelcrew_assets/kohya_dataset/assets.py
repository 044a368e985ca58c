"""The kohya_dataset asset: the captioned images in the layout kohya sd-scripts trains from, zipped."""

import io
import zipfile
from collections import defaultdict
from pathlib import PurePosixPath

import dagster as dg
from PIL import Image

from modelcrew_assets.captions.text import close_up_caption
from modelcrew_assets.handoffs import Captions, KohyaDataset, read_index, read_model_spec, write_index
from modelcrew_assets.imaging import contact_sheet, decode_image, encode_jpeg
from modelcrew_assets.kohya_dataset.face_crops import face_crop, wants_crop
from modelcrew_assets.kohya_dataset.layout import (
    CAPTION_EXTENSION,
    CONFIG_NAME,
    IMAGES_DIR,
    DatasetFile,
    TrainingPlan,
    bucket_histogram,
    build_zip,
    content_version,
    dataset_toml,
    image_folder_name,
    plan_training,
)
from modelcrew_assets.manifest import DatasetSection
from modelcrew_assets.near_duplicates import find_near_duplicates
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.previews import stored_preview
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.storage_keys import asset_prefix
from modelcrew_assets.worker.kohya import Recipe, one_epoch_repeats

CROP_SUFFIX = "-face"  # a crop's stem: its photo's stem + this (no "_", see layout.py)

# Check names, spelled once (the spec and the result must agree), and what each means in the UI.
ENOUGH = "dataset_has_enough_images"
NO_NEAR_DUPLICATES = "dataset_has_no_near_duplicates"
CAPTION_FILES = "every_image_has_its_caption_file"
CHECKS = {
    ENOUGH: "[dataset].recommended_photos (15)+ distinct photos for a likeness LoRA (a warning below; under "
    "min_photos (5) it blocks training); face crops do not count",
    NO_NEAR_DUPLICATES: "no two photos are near-duplicates, which would over-weight one (a photo's own face crop "
    "is meant to look like it and is not compared)",
    CAPTION_FILES: "every image in the zip has its .txt caption beside it, as kohya expects (blocks training)",
}


@dg.asset(
    partitions_def=models_partitions,
    deps=[Captions.ASSET],
    group_name="training_data",
    kinds={"python"},
    check_specs=[
        dg.AssetCheckSpec(ENOUGH, asset=KohyaDataset.ASSET, blocking=True, description=CHECKS[ENOUGH]),
        dg.AssetCheckSpec(NO_NEAR_DUPLICATES, asset=KohyaDataset.ASSET, description=CHECKS[NO_NEAR_DUPLICATES]),
        dg.AssetCheckSpec(CAPTION_FILES, asset=KohyaDataset.ASSET, blocking=True, description=CHECKS[CAPTION_FILES]),
    ],
)
def kohya_dataset(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """The training set as kohya sd-scripts reads it: img/<repeats>_<trigger> <class>/, dataset.toml, zip."""
    model = context.partition_key
    spec = read_model_spec(storage, model)
    captions = read_index(storage, model, Captions)
    images: dict[str, Image.Image] = {}  # photos, by stem
    entries: list[tuple[str, Image.Image, str]] = []  # (stem, image, caption): photos, then face crops
    crops: list[tuple[str, Image.Image, str]] = []
    exact_duplicates = []
    for item in captions.items:
        stem = item.image_sha256[:16]
        if stem in images:  # the same photo uploaded twice would only double its weight
            exact_duplicates.append(item.image_key)
            continue
        image = decode_image(storage.get_bytes(item.image_key), item.image_key)
        images[stem] = image
        entries.append((stem, image, item.caption))
        if wants_crop(item.face_box, image.size, spec.dataset):
            crop = face_crop(image, item.face_box, spec.dataset.crop_scale)
            crops.append((stem + CROP_SUFFIX, crop, close_up_caption(spec.trigger, spec.model.class_word)))
    entries += crops
    plan = plan_training(len(entries), spec.training)  # crops train like photos, so they count in the steps
    folder = image_folder_name(plan.repeats, spec.trigger, spec.model.class_word)
    for warning in plan.warnings:
        context.log.warning(f"kohya_dataset {model}: {warning}")
    files = []
    for stem, image, caption in entries:
        files.append(DatasetFile(f"{IMAGES_DIR}/{folder}/{stem}.jpg", encode_jpeg(image, quality=95)))
        files.append(DatasetFile(f"{IMAGES_DIR}/{folder}/{stem}{CAPTION_EXTENSION}", (caption + "\n").encode()))
    if exact_duplicates:
        context.log.warning(f"kohya_dataset {model}: dropped exact duplicates {', '.join(exact_duplicates)}")
    config = dataset_toml(folder, plan, f"{spec.trigger} {spec.model.class_word}", spec.training.resolution)
    files.append(DatasetFile(CONFIG_NAME, config.encode()))

    version = content_version(files)
    prefix = f"{asset_prefix(model, 'kohya_dataset')}{version}/"
    zip_key, config_key = prefix + "dataset.zip", prefix + CONFIG_NAME
    archive = build_zip(files)
    reused = storage.exists(zip_key) and storage.exists(config_key)
    if not reused:
        storage.put_bytes(config_key, config.encode(), "application/toml")
        storage.put_bytes(zip_key, archive, "application/zip")
    write_index(
        storage,
        KohyaDataset(
            model=model,
            dry_run=captions.dry_run,
            version=version,
            zip_key=zip_key,
            config_key=config_key,
            image_count=len(entries),
            repeats=plan.repeats,
            image_folder=folder,
            photo_count=len(images),
            face_crop_count=len(crops),
        ),
    )

    histogram = bucket_histogram((image.size for _, image, _ in entries), spec.training.resolution)
    metadata = {
        "dagster/uri": dg.MetadataValue.path(storage.uri(zip_key)),
        "dataset_config": dg.MetadataValue.path(storage.uri(config_key)),
        "version": version,
        "reused": reused,
        "image_count": len(entries),
        "photo_count": len(images),
        "face_crop_count": len(crops),
        "face_crops": spec.dataset.face_crops,
        "exact_duplicates_dropped": len(exact_duplicates),
        "image_folder": f"{IMAGES_DIR}/{folder}",
        **plan_metadata(plan),
        "buckets": dg.MetadataValue.md(
            "| bucket (w x h) | images |\n| --- | --- |\n"
            + "\n".join(f"| {bucket} | {count} |" for bucket, count in histogram.items())
        ),
        **stored_preview(storage, "preview", prefix + "preview.jpg", preview(entries, len(images)), PREVIEW_ALT, 640),
        "zip_bytes": len(archive),
        "dry_run": captions.dry_run,
    }
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            enough_images_check(len(images), spec.dataset),
            near_duplicates_check(images),
            caption_files_check(archive, plan.repeats, spec.trigger),
        ],
    )


def plan_metadata(plan: TrainingPlan) -> dict:
    return {
        "repeats": plan.repeats,
        "repeats_source": plan.repeats_source,
        "epochs": plan.epochs,
        "steps_per_epoch": plan.steps_per_epoch,
        "max_train_steps": plan.max_train_steps,
        "checkpoints_at": ", ".join(
            f"step {step} (epoch {step / plan.steps_per_epoch:.2f})" for step in plan.checkpoint_steps
        ),
        "warnings": "; ".join(plan.warnings) or "none",
        # What the training worker renames the folder to, so one kohya epoch holds the whole budget
        # (resumed steps are numbered right only inside the first epoch); same images, same mix.
        "trainer_repeats": one_epoch_repeats(
            plan.image_count,
            plan.repeats,
            Recipe(max_train_steps=plan.max_train_steps, train_batch_size=plan.batch_size),
        ),
    }


PREVIEW_ALT = "first 20 dataset images"


def preview(entries: list[tuple[str, Image.Image, str]], photos: int, shown: int = 20) -> Image.Image:
    """Photos and face crops side by side, each labelled as what it is."""
    crops = entries[photos:]
    crop_slots = min(len(crops), shown // 2)
    picked = entries[:photos][: shown - crop_slots] + crops[:crop_slots]
    labels = ["face crop" if stem.endswith(CROP_SUFFIX) else "photo" for stem, _, _ in picked]
    return contact_sheet([image for _, image, _ in picked], columns=5, cell=128, labels=labels)


def enough_images_check(count: int, dataset: DatasetSection) -> dg.AssetCheckResult:
    enough, too_few = dataset.recommended_photos, dataset.min_photos
    severity = dg.AssetCheckSeverity.ERROR if count < too_few else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        check_name=ENOUGH,
        passed=count >= enough,
        severity=severity,
        metadata={"images": count, "warn_below": enough, "fail_below": too_few},
        description=None if count >= enough else f"{count} photos; a likeness LoRA wants {enough}+",
    )


def near_duplicates_check(images: dict[str, Image.Image]) -> dg.AssetCheckResult:
    pairs = find_near_duplicates(images.items())
    return dg.AssetCheckResult(
        check_name=NO_NEAR_DUPLICATES,
        passed=not pairs,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"pairs": len(pairs), "examples": "; ".join(pair.describe() for pair in pairs[:10]) or "none"},
    )


def caption_files_check(archive: bytes, repeats: int, trigger: str) -> dg.AssetCheckResult:
    """Read the zip as kohya reads the folder: repeats from the folder name, a non-empty first caption line
    next to each image, and no caption without its image."""
    problems = []
    by_folder: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        names = opened.namelist()
        for name in names:
            path = PurePosixPath(name)
            if path.parts[0] == IMAGES_DIR and len(path.parts) == 3:
                by_folder[path.parts[1]][path.stem].add(path.suffix)
        for folder, stems in by_folder.items():
            count, _, _ = folder.partition("_")
            if not count.isdigit() or int(count) != repeats:
                problems.append(f"folder {folder!r} does not start with '{repeats}_'")
            for stem, suffixes in stems.items():
                if suffixes != {".jpg", CAPTION_EXTENSION}:
                    problems.append(f"{folder}/{stem}: has {sorted(suffixes)}, expected an image and its caption")
                    continue
                first_line = opened.read(f"{IMAGES_DIR}/{folder}/{stem}{CAPTION_EXTENSION}").decode().split("\n")[0]
                if not first_line.startswith(f"{trigger}, "):
                    problems.append(f"{folder}/{stem}{CAPTION_EXTENSION}: first line does not start with the trigger")
    if len(by_folder) != 1:
        problems.append(f"expected one image folder under {IMAGES_DIR}/, found {len(by_folder)}")
    return dg.AssetCheckResult(
        check_name=CAPTION_FILES,
        passed=not problems,
        metadata={"files": len(names), "problems": "; ".join(problems[:10]) or "none"},
    )
