"""Builders for test inputs: manifests and a model's uploads laid out as DESIGN.md describes."""

from __future__ import annotations

import hashlib
import io

import dagster as dg
from PIL import Image, ImageOps

from modelcrew_assets.handoffs import SwappedFace, SwappedFaces, write_index
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets.storage_keys import asset_prefix, face_prefix, manifest_key, targets_prefix


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def manifest_text(name: str = "blondie", trigger: str = "blondie", extra: str = "") -> str:
    return (
        f'[model]\nname = "{name}"\ntrigger = "{trigger}"\nclass_word = "woman"\n\n'
        '[consent]\nattested_by = "studio@example.com"\nbasis = "synthetic"\n' + extra
    )


def target_variants(face: Image.Image, count: int) -> list[Image.Image]:
    """Distinct photos with the same face: crops, mirrors and tone shifts of one portrait."""
    variants = []
    for index in range(count):
        crop = 8 * (index % 5)
        image = face.crop((crop, crop, face.width - crop, face.height - crop))
        if index % 2:
            image = ImageOps.mirror(image)
        variants.append(image.point(lambda value, shift=index: min(255, value + shift)))
    return variants


def upload_model(
    storage: StorageResource, face: Image.Image, name: str = "blondie", targets: int = 3, manifest: str | None = None
) -> None:
    storage.put_bytes(manifest_key(name), (manifest or manifest_text(name, name)).encode())
    storage.put_bytes(face_prefix(name) + "face.jpg", jpeg_bytes(face))
    for index, image in enumerate(target_variants(face, targets)):
        storage.put_bytes(f"{targets_prefix(name)}target-{index:03d}.jpg", jpeg_bytes(image))


def store_swapped_faces(
    storage: StorageResource, images: list[Image.Image], model: str = "blondie", dry_run: bool = False
) -> SwappedFaces:
    """What the swapped_faces stage hands over: JPEGs under models/<m>/swapped_faces/ and their index."""
    storage.put_bytes(manifest_key(model), manifest_text(model, model).encode())
    faces = []
    for index, image in enumerate(images):
        data = jpeg_bytes(image)
        sha = hashlib.sha256(data).hexdigest()
        key = f"{asset_prefix(model, 'swapped_faces')}{sha}.jpg"
        storage.put_bytes(key, data, "image/jpeg")
        faces.append(
            SwappedFace(
                key=key,
                sha256=sha,
                target_key=f"uploads/{model}/targets/target-{index:03d}.jpg",
                target_sha256=sha,
                width=image.width,
                height=image.height,
            )
        )
    index = SwappedFaces(model=model, dry_run=dry_run, images=tuple(faces))
    write_index(storage, index)
    return index


def tick_registering_partitions(instance: dg.DagsterInstance, storage: StorageResource, cursor: str | None = None):
    """One upload-sensor tick; the partitions it asks for are added, as the daemon would before the next tick."""
    # Imported here: the benchmarks use these builders and need not load the definitions.
    from modelcrew_assets.definitions import defs
    from modelcrew_assets.intake.sensors import model_uploads_sensor

    # As a context manager: its resources hold an entered instance that must be exited here, not by the
    # garbage collector during some later test (conftest.no_defs_state_storage_left_behind).
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"storage": storage}, definitions=defs
    ) as context:
        result = model_uploads_sensor(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(models_partitions.name, list(request.partition_keys))
    return result
