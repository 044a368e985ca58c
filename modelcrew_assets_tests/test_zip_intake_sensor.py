"""The upload sensor and uploads/<model>.zip: unpack once per zip version, then the usual partition + run."""

import pytest

from modelcrew_assets_tests.builders import jpeg_bytes, target_variants
from modelcrew_assets_tests.builders import tick_registering_partitions as tick
from modelcrew_assets_tests.test_zip_intake import make_zip, model_entries

# The zip guarantees on local disk, on S3 by listing, and on S3 with its event notifications in SQS.
all_storages = pytest.mark.parametrize("storage", ["local", "s3", "s3_queue"], indirect=True)


def keys(storage):
    return sorted(obj.key for obj in storage.list("uploads/"))


@all_storages
def test_zip_gives_partition_and_one_run_with_the_upload_layout(instance, storage, astronaut):
    zipped = make_zip(model_entries(astronaut, targets=2))
    storage.put_bytes("uploads/blondie.zip", zipped)
    result = tick(instance, storage)
    assert [request.partition_key for request in result.run_requests] == ["blondie"]
    assert result.dynamic_partitions_requests[0].partition_keys == ["blondie"]
    assert keys(storage) == [
        "uploads/blondie.zip",
        "uploads/blondie/face/face.jpg",
        "uploads/blondie/model.toml",
        "uploads/blondie/targets/t0.jpg",
        "uploads/blondie/targets/t1.jpg",
    ]
    assert storage.get_bytes("uploads/blondie.zip") == zipped, "the original zip is kept as uploaded"

    storage.put_bytes("uploads/blondie.zip", zipped)
    again = tick(instance, storage, result.cursor)
    assert not again.run_requests, "the same zip uploaded twice starts no second run"

    changed = model_entries(astronaut, targets=2)
    changed["targets/new.jpg"] = jpeg_bytes(target_variants(astronaut, 4)[3])
    storage.put_bytes("uploads/blondie.zip", make_zip(changed))
    more = tick(instance, storage, again.cursor)
    assert len(more.run_requests) == 1
    assert more.run_requests[0].run_key != result.run_requests[0].run_key
    assert "uploads/blondie/targets/new.jpg" in keys(storage)
    assert not tick(instance, storage, more.cursor).run_requests


@all_storages
def test_bad_zip_names_the_entry_once_and_writes_nothing(instance, storage, astronaut):
    entries = model_entries(astronaut)
    entries["../escape.jpg"] = jpeg_bytes(astronaut)
    storage.put_bytes("uploads/blondie.zip", make_zip(entries))
    result = tick(instance, storage)
    assert not result.run_requests and not result.dynamic_partitions_requests
    assert "uploads/blondie.zip" in result.skip_reason.skip_message
    assert "'../escape.jpg'" in result.skip_reason.skip_message
    assert keys(storage) == ["uploads/blondie.zip"]

    again = tick(instance, storage, result.cursor)
    assert "escape" not in again.skip_reason.skip_message, "reported once, not every tick"


def test_zip_with_an_invalid_model_name_is_reported(instance, local_storage, astronaut):
    local_storage.put_bytes("uploads/Blondie Two.zip", make_zip(model_entries(astronaut)))
    result = tick(instance, local_storage)
    assert "'Blondie Two' is not a valid model name" in result.skip_reason.skip_message
    assert keys(local_storage) == ["uploads/Blondie Two.zip"]


def test_zip_adds_targets_to_a_model_uploaded_before(instance, local_storage, astronaut):
    from modelcrew_assets_tests.builders import upload_model

    upload_model(local_storage, astronaut, "blondie", targets=2)
    first = tick(instance, local_storage)
    assert len(first.run_requests) == 1
    extra = {"targets/extra.jpg": jpeg_bytes(target_variants(astronaut, 5)[4])}
    local_storage.put_bytes("uploads/blondie.zip", make_zip(extra))
    second = tick(instance, local_storage, first.cursor)
    assert len(second.run_requests) == 1
    assert "uploads/blondie/targets/extra.jpg" in keys(local_storage)


def test_zip_refused_for_want_of_a_manifest_is_retried_when_one_arrives(instance, local_storage, astronaut):
    from modelcrew_assets_tests.builders import manifest_text

    local_storage.put_bytes("uploads/blondie.zip", make_zip(model_entries(astronaut, manifest=False)))
    first = tick(instance, local_storage)
    assert "no manifest" in first.skip_reason.skip_message
    assert "no manifest" not in tick(instance, local_storage, first.cursor).skip_reason.skip_message

    local_storage.put_bytes("uploads/blondie/model.toml", manifest_text().encode())
    second = tick(instance, local_storage, first.cursor)
    assert [request.partition_key for request in second.run_requests] == ["blondie"]
    assert "uploads/blondie/targets/t2.jpg" in keys(local_storage)
