import dagster as dg
import pytest

from modelcrew_assets.definitions import defs
from modelcrew_assets.intake.sensors import model_uploads_sensor
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.storage_keys import targets_prefix
from modelcrew_assets_tests.builders import jpeg_bytes, manifest_text, target_variants, upload_model

# Every guarantee holds on local disk, on S3 by listing, and on S3 with its event notifications in SQS.
pytestmark = pytest.mark.parametrize("storage", ["local", "s3", "s3_queue"], indirect=True)


def tick(instance, storage, cursor=None):
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"storage": storage}, definitions=defs
    ) as context:
        return model_uploads_sensor(context)


def test_new_model_gives_one_partition_and_one_run(instance, storage, astronaut):
    upload_model(storage, astronaut, "blondie")
    result = tick(instance, storage)
    assert [r.partition_key for r in result.run_requests] == ["blondie"]
    assert result.dynamic_partitions_requests[0].partition_keys == ["blondie"]
    assert result.asset_events[0].partition == "blondie"

    instance.add_dynamic_partitions(models_partitions.name, ["blondie"])
    again = tick(instance, storage, result.cursor)
    assert not again.run_requests

    for index, image in enumerate(target_variants(astronaut, 6)[3:]):
        storage.put_bytes(f"{targets_prefix('blondie')}more-{index}.jpg", jpeg_bytes(image))
    more = tick(instance, storage, again.cursor)
    assert len(more.run_requests) == 1
    assert more.run_requests[0].run_key != result.run_requests[0].run_key
    assert not more.dynamic_partitions_requests


def test_bad_manifest_gives_no_partition_and_names_file_and_field(instance, storage, astronaut):
    upload_model(storage, astronaut, "blondie", manifest=manifest_text().replace("trigger", "triger"))
    result = tick(instance, storage)
    assert not result.run_requests and not result.dynamic_partitions_requests
    message = result.skip_reason.skip_message
    assert "uploads/blondie/model.toml" in message and "triger" in message
    again = tick(instance, storage, result.cursor)
    assert "model.toml" not in again.skip_reason.skip_message


def test_daemon_restart_with_stored_cursor_requests_no_duplicate_run(instance, storage, astronaut):
    upload_model(storage, astronaut, "blondie")
    first = tick(instance, storage)
    stored_cursor = first.cursor
    restarted = tick(instance, storage, stored_cursor)
    assert not restarted.run_requests and not restarted.dynamic_partitions_requests


def test_lost_cursor_still_gives_the_same_run_key(instance, storage, astronaut):
    upload_model(storage, astronaut, "blondie")
    first = tick(instance, storage)
    again = tick(instance, storage)
    assert again.run_requests[0].run_key == first.run_requests[0].run_key


def test_incomplete_upload_waits_and_says_for_what(instance, storage, astronaut):
    storage.put_bytes("uploads/blondie/model.toml", manifest_text().encode())
    storage.put_bytes("uploads/blondie/face/face.jpg", jpeg_bytes(astronaut))
    result = tick(instance, storage)
    assert not result.run_requests
    assert "at least one target photo in uploads/blondie/targets/" in result.skip_reason.skip_message


def test_invalid_model_folder_is_reported_once(instance, storage, astronaut):
    storage.put_bytes("uploads/Bad Name/model.toml", b"x")
    first = tick(instance, storage)
    assert "'Bad Name' is not a valid model name" in first.skip_reason.skip_message
    second = tick(instance, storage, first.cursor)
    assert "Bad Name" not in second.skip_reason.skip_message


def test_problems_are_logged_when_other_models_run(instance, storage, astronaut, capfd):
    upload_model(storage, astronaut, "blondie")
    upload_model(storage, astronaut, "broken", manifest=manifest_text("broken", "broken").replace("basis", "basys"))
    result = tick(instance, storage)
    assert [r.partition_key for r in result.run_requests] == ["blondie"]
    assert "uploads/broken/model.toml: missing required field [consent].basis" in capfd.readouterr().err


def test_two_models_each_get_their_own_partition_and_run(instance, storage, astronaut):
    upload_model(storage, astronaut, "blondie")
    upload_model(storage, astronaut, "brunette")
    result = tick(instance, storage)
    assert sorted(r.partition_key for r in result.run_requests) == ["blondie", "brunette"]
    assert sorted(result.dynamic_partitions_requests[0].partition_keys) == ["blondie", "brunette"]


def test_observation_records_counts_and_data_version(instance, storage, astronaut):
    upload_model(storage, astronaut, "blondie", targets=4)
    result = tick(instance, storage)
    observation = result.asset_events[0]
    assert observation.metadata["target_photos"].value == 4
    assert observation.metadata["face_images"].value == 1
    assert observation.tags["dagster/data_version"] == result.run_requests[0].run_key.split(":")[1]


def test_platform_junk_does_not_trigger_a_run(instance, storage, astronaut):
    upload_model(storage, astronaut, "blondie")
    first = tick(instance, storage)
    storage.put_bytes("uploads/blondie/targets/.DS_Store", b"junk")
    storage.put_bytes("uploads/blondie/targets/Thumbs.db", b"junk")
    second = tick(instance, storage, first.cursor)
    assert not second.run_requests
