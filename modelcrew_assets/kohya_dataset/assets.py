"""The kohya_dataset asset: the captioned images in the layout kohya sd-scripts trains from, zipped."""

import io
import zipfile
from collections import defaultdict
from pathlib import PurePosixPath

import dagster as dg
from PIL import Image

from modelcrew_assets.handoffs import Captions, KohyaDataset, read_index, read_model_spec, write_index
from modelcrew_assets.imaging import contact_sheet, decode_image, encode_jpeg, markdown_image
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
from modelcrew_assets.near_duplicates import find_near_duplicates
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.storage_keys import asset_prefix
from modelcrew_assets.worker.kohya import Recipe, one_epoch_repeats

ENOUGH_IMAGES = 15
TOO_FEW_IMAGES = 5

# Check names, spelled once (the spec and the result must agree), and what each means in the UI.
ENOUGH = "dataset_has_enough_images"
NO_NEAR_DUPLICATES = "dataset_has_no_near_duplicates"
CAPTION_FILES = "every_image_has_its_caption_file"
CHECKS = {
    ENOUGH: f"{ENOUGH_IMAGES}+ images for a likeness LoRA (a warning below; under {TOO_FEW_IMAGES} it blocks training)",
    NO_NEAR_DUPLICATES: "no two images are near-duplicates, which would over-weight one photo",
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
    plan = plan_training(len({item.image_sha256 for item in captions.items}), spec.training)
    folder = image_folder_name(plan.repeats, spec.trigger, spec.model.class_word)
    for warning in plan.warnings:
        context.log.warning(f"kohya_dataset {model}: {warning}")

    images: dict[str, Image.Image] = {}
    files, exact_duplicates = [], []
    for item in captions.items:
        stem = item.image_sha256[:16]
        if stem in images:  # the same photo uploaded twice would only double its weight
            exact_duplicates.append(item.image_key)
            continue
        image = decode_image(storage.get_bytes(item.image_key), item.image_key)
        images[stem] = image
        files.append(DatasetFile(f"{IMAGES_DIR}/{folder}/{stem}.jpg", encode_jpeg(image, quality=95)))
        files.append(DatasetFile(f"{IMAGES_DIR}/{folder}/{stem}{CAPTION_EXTENSION}", (item.caption + "\n").encode()))
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
            image_count=len(images),
            repeats=plan.repeats,
            image_folder=folder,
        ),
    )

    histogram = bucket_histogram((image.size for image in images.values()), spec.training.resolution)
    sheet = contact_sheet(list(images.values())[:20], columns=5, cell=128)
    metadata = {
        "dagster/uri": dg.MetadataValue.path(storage.uri(zip_key)),
        "dataset_config": dg.MetadataValue.path(storage.uri(config_key)),
        "version": version,
        "reused": reused,
        "image_count": len(images),
        "exact_duplicates_dropped": len(exact_duplicates),
        "image_folder": f"{IMAGES_DIR}/{folder}",
        **plan_metadata(plan),
        "buckets": dg.MetadataValue.md(
            "| bucket (w x h) | images |\n| --- | --- |\n"
            + "\n".join(f"| {bucket} | {count} |" for bucket, count in histogram.items())
        ),
        "preview": dg.MetadataValue.md(markdown_image(sheet, "first 20 dataset images", max_side=640)),
        "zip_bytes": len(archive),
        "dry_run": captions.dry_run,
    }
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            enough_images_check(len(images)),
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


def enough_images_check(count: int) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.ERROR if count < TOO_FEW_IMAGES else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        check_name=ENOUGH,
        passed=count >= ENOUGH_IMAGES,
        severity=severity,
        metadata={"images": count, "warn_below": ENOUGH_IMAGES, "fail_below": TOO_FEW_IMAGES},
        description=None if count >= ENOUGH_IMAGES else f"{count} images; a likeness LoRA wants {ENOUGH_IMAGES}+",
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
