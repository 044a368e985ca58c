"""The production instance config on the machine's own PostgreSQL: a scratch database per test run."""

import shutil
import uuid
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from modelcrew_assets.definitions import defs
from modelcrew_assets.intake.sensors import model_uploads_sensor
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets_tests.builders import upload_model

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[1]
ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


@pytest.fixture
def scratch_database():
    name = f"modelcrew_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(ADMIN_DSN)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    yield name
    admin.cursor().execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def postgres_instance(scratch_database, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    for name, value in {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_USERNAME": "postgres",
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": scratch_database,
    }.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


@dg.asset(partitions_def=models_partitions, deps=["model_uploads"])
def upload_count(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"model": context.partition_key})


def test_sensor_tick_and_partitioned_materialization_on_postgres(postgres_instance, local_storage, astronaut):
    assert type(postgres_instance.run_storage).__name__ == "PostgresRunStorage"
    upload_model(local_storage, astronaut, "blondie")
    with dg.build_sensor_context(
        instance=postgres_instance, resources={"storage": local_storage}, definitions=defs
    ) as context:
        result = model_uploads_sensor(context)
    assert [request.partition_key for request in result.run_requests] == ["blondie"]

    postgres_instance.add_dynamic_partitions(
        models_partitions.name, result.dynamic_partitions_requests[0].partition_keys
    )
    assert postgres_instance.get_dynamic_partitions(models_partitions.name) == ["blondie"]
    outcome = dg.materialize([upload_count], partition_key="blondie", instance=postgres_instance)
    assert outcome.success
    event = postgres_instance.get_latest_materialization_event(dg.AssetKey("upload_count"))
    assert event.dagster_event.partition == "blondie"
