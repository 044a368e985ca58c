"""kohya sd-scripts' dataset rules, pure: the `<repeats>_<class tokens>` folder, the `--dataset_config`
TOML, aspect-ratio buckets, the repeats/epochs/steps arithmetic, and a reproducible zip.

Checked against kohya-ss/sd-scripts (commit noted in docs/DESIGN.md): the folder name is split at the first
"_" into an int of repeats and the class tokens; a caption is the first line of `<image stem><ext>` with
`caption_extension` (whose command-line default is ".caption", so we set ".txt" explicitly); a stem with
five or more "_"-separated parts is also looked up without its last four, so our stems contain no "_".
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from modelcrew_assets.manifest import TrainingSection
from modelcrew_assets.worker.kohya import BUCKET_RESO_STEPS, MAX_BUCKET_RESO, MIN_BUCKET_RESO

IMAGES_DIR = "img"
CAPTION_EXTENSION = ".txt"
CONFIG_NAME = "dataset.toml"
# Bucket limits: the worker passes the same numbers on kohya's command line (worker/kohya.py), and both
# dataset.toml and the histogram use them.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same files always give the same zip


@dataclass(frozen=True)
class DatasetFile:
    path: str  # inside the dataset folder, "/"-separated
    data: bytes


@dataclass(frozen=True)
class TrainingPlan:
    image_count: int
    repeats: int
    repeats_source: str  # "manifest" (set explicitly), "default", or "adjusted" (default lowered to fit)
    batch_size: int
    max_train_steps: int
    save_every_n_steps: int
    steps_per_epoch: int
    epochs: int  # as kohya computes it: ceil(max_train_steps / steps_per_epoch)
    checkpoint_steps: tuple[int, ...]
    warnings: tuple[str, ...]


def image_folder_name(repeats: int, trigger: str, class_word: str) -> str:
    return f"{repeats}_{trigger} {class_word}"


def plan_training(image_count: int, training: TrainingSection) -> TrainingPlan:
    """Repeats, epochs and checkpoint steps for the recipe; warnings where the numbers make no sense.

    A repeats value set in the manifest is kept as written. The default (the studio's 30) is lowered when
    one epoch would not fit in the step budget, so every image is seen as often as every other."""
    batch, budget, every = training.train_batch_size, training.max_train_steps, training.save_every_n_steps
    repeats = training.repeats
    source = "manifest" if "repeats" in training.model_fields_set else "default"
    if source == "default" and image_count and math.ceil(image_count * repeats / batch) > budget:
        repeats, source = max(1, budget * batch // image_count), "adjusted"
    steps_per_epoch = max(1, math.ceil(image_count * repeats / batch))
    saves = tuple(range(every, budget + 1, every))
    checkpoints = saves if budget in saves else (*saves, budget)  # kohya's final weights: the last step
    warnings = []
    if steps_per_epoch > budget:
        warnings.append(
            f"one epoch is {steps_per_epoch} steps but max_train_steps is {budget}: training stops "
            f"{budget / steps_per_epoch:.0%} into the first epoch, so some images are never seen "
            f"{repeats} times; set [training].repeats to at most {max(1, budget * batch // image_count)}"
        )
    if every > budget:
        warnings.append(f"save_every_n_steps {every} > max_train_steps {budget}: only the final checkpoint is saved")
    if image_count and every * batch < image_count:
        warnings.append(
            f"the first checkpoint (step {every}) comes before every one of the {image_count} images has been "
            "seen once; raise save_every_n_steps"
        )
    return TrainingPlan(
        image_count,
        repeats,
        source,
        batch,
        budget,
        every,
        steps_per_epoch,
        math.ceil(budget / steps_per_epoch),
        checkpoints,
        tuple(warnings),
    )


def bucket_resolutions(
    resolution: int, min_reso: int = MIN_BUCKET_RESO, max_reso: int = MAX_BUCKET_RESO, steps: int = BUCKET_RESO_STEPS
) -> list[tuple[int, int]]:
    """The predefined (width, height) buckets kohya makes for this training area: model_util.py's
    make_bucket_resolutions(max_reso=(resolution, resolution), min_size, max_size, divisible)."""
    area = resolution * resolution
    square = int(math.sqrt(area) // steps) * steps
    resos = {(square, square)}
    for width in range(min_reso, max_reso + 1, steps):
        height = min(max_reso, int((area // width) // steps) * steps)
        if height >= min_reso:
            resos.update({(width, height), (height, width)})
    return sorted(resos)


def bucket_for(width: int, height: int, resos: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The bucket an image trains in (BucketManager.select_bucket without bucket_no_upscale): its own size
    if that is a bucket, else the first of the sorted buckets with the closest aspect ratio."""
    if (width, height) in resos:
        return (width, height)
    ratio = width / height
    return min(resos, key=lambda reso: abs(reso[0] / reso[1] - ratio))


def bucket_histogram(sizes: Iterable[tuple[int, int]], resolution: int) -> dict[str, int]:
    resos = bucket_resolutions(resolution)
    counts = Counter(bucket_for(width, height, resos) for width, height in sizes)
    return {f"{w}x{h}": counts[(w, h)] for w, h in sorted(counts)}


def dataset_toml(folder: str, plan: TrainingPlan, class_tokens: str, resolution: int) -> str:
    """A `--dataset_config` file for the layout: one DreamBooth subset (image_dir relative to the dataset
    folder, so training runs from the unpacked folder). With a config file kohya does not read repeats or
    class tokens from the folder name, so both are spelled out."""
    quote = json.dumps  # a TOML basic string accepts JSON's escapes
    return "\n".join(
        [
            "[general]",
            f"caption_extension = {quote(CAPTION_EXTENSION)}",
            "shuffle_caption = false",
            "keep_tokens = 1",
            "",
            "[[datasets]]",
            f"resolution = {resolution}",
            f"batch_size = {plan.batch_size}",
            "enable_bucket = true",
            f"min_bucket_reso = {MIN_BUCKET_RESO}",
            f"max_bucket_reso = {MAX_BUCKET_RESO}",
            f"bucket_reso_steps = {BUCKET_RESO_STEPS}",
            "bucket_no_upscale = false",
            "",
            "  [[datasets.subsets]]",
            f"  image_dir = {quote(f'{IMAGES_DIR}/{folder}')}",
            f"  num_repeats = {plan.repeats}",
            f"  class_tokens = {quote(class_tokens)}",
            "",
        ]
    )


def content_version(files: Iterable[DatasetFile]) -> str:
    """A hash of every file's path and bytes: the same dataset always has the same version."""
    digest = hashlib.sha256()
    for item in sorted(files, key=lambda f: f.path):
        digest.update(f"{item.path}\t{hashlib.sha256(item.data).hexdigest()}\n".encode())
    return digest.hexdigest()[:16]


def build_zip(files: Iterable[DatasetFile]) -> bytes:
    """The dataset folder as a zip, byte-for-byte reproducible (sorted, fixed times, stored: JPEGs do
    not compress)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for item in sorted(files, key=lambda f: f.path):
            info = zipfile.ZipInfo(item.path, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16  # rw-r--r-- when unpacked
            archive.writestr(info, item.data)
    return buffer.getvalue()
