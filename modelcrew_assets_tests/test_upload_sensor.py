import dagster as dg

from modelcrew_assets.definitions import defs
from modelcrew_assets.intake.sensors import model_uploads_sensor
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.storage_keys import targets_prefix
from modelcrew_assets_tests.builders import jpeg_bytes, manifest_text, target_variants, upload_model


def tick(instance, storage, cursor=None):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"storage": storage}, definitions=defs
    )
    return model_uploads_sensor(context), context


def test_new_model_gives_one_partition_and_one_run(instance, storage, astronaut):
    upload_model(storage, astronaut, "blondie")
    result, context = tick(instance, storage)
    assert [r.partition_key for r in result.run_requests] == ["blondie"]
    assert result.dynamic_partitions_requests[0].partition_keys == ["blondie"]
    assert result.asset_events[0].partition == "blondie"

    instance.add_dynamic_partitions(models_partitions.name, ["blondie"])
    again, _ = tick(instance, storage, result.cursor)
    assert not again.run_requests

    for index, image in enumerate(target_variants(astronaut, 6)[3:]):
        storage.put_bytes(f"{targets_prefix('blondie')}more-{index}.jpg", jpeg_bytes(image))
    more, _ = tick(instance, storage, again.cursor)
    assert len(more.run_requests) == 1
    assert more.run_requests[0].run_key != result.run_requests[0].run_key
    assert not more.dynamic_partitions_requests


def test_bad_manifest_gives_no_partition_and_names_file_and_field(instance, storage, astronaut):
    upload_model(storage, astronaut, "blondie", manifest=manifest_text().replace("trigger", "triger"))
    result, _ = tick(instance, storage)
    assert not result.run_requests and not result.dynamic_partitions_requests
    message = result.skip_reason.skip_message
    assert "uploads/blondie/model.toml" in message and "triger" in message
    again, _ = tick(instance, storage, result.cursor)
    assert "model.toml" not in again.skip_reason.skip_message
