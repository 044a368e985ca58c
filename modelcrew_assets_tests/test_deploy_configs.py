"""Every deployment config file loads under Dagster's own config validation (or parses, for compose/Helm)."""

import re
import shutil
from pathlib import Path

import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config
from dagster._core.workspace.config_schema import ensure_workspace_config

ROOT = Path(__file__).resolve().parents[1]
PG_ENV = {
    "DAGSTER_PG_HOST": "127.0.0.1",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USERNAME": "postgres",
    "DAGSTER_PG_PASSWORD": "",
    "DAGSTER_PG_DB": "test",
}


@pytest.mark.parametrize("config", ["dagster.yaml", "deploy/dagster.postgres.yaml"])
def test_instance_configs_pass_dagster_validation(config, tmp_path, monkeypatch):
    for name, value in PG_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    shutil.copy(ROOT / config, tmp_path / "dagster.yaml")
    validated, _ = dagster_instance_config(str(tmp_path))
    assert validated["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert validated["concurrency"]["pools"]["default_limit"] == 1
    assert validated["telemetry"]["enabled"] is False


@pytest.mark.parametrize("workspace", ["workspace.yaml", "deploy/docker/workspace.yaml"])
def test_workspace_files_pass_dagster_validation(workspace):
    path = ROOT / workspace
    ensure_workspace_config(yaml.safe_load(path.read_text()), str(path))


def test_compose_runs_webserver_daemon_and_user_code_on_postgres():
    compose = yaml.safe_load((ROOT / "deploy/docker/docker-compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "modelcrew_user_code", "webserver", "daemon"} <= set(services)
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    assert "modelcrew_assets.definitions" in services["modelcrew_user_code"]["command"]
    workspace = yaml.safe_load((ROOT / "deploy/docker/workspace.yaml").read_text())
    assert workspace["load_from"][0]["grpc_server"]["host"] == "modelcrew_user_code"


def test_helm_values_point_at_our_code_and_limit_the_gpu_pool():
    values = yaml.safe_load((ROOT / "deploy/helm/values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "modelcrew_assets.definitions"]
    assert values["concurrency"]["pools"]["defaultLimit"] == 1
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"


def _settings_the_orchestrator_reads() -> set[str]:
    """Every variable bound through `env_if_set("...")`, plus settings.py's own *_ENV names."""
    package = ROOT / "modelcrew_assets"
    names = set()
    for source in package.rglob("*.py"):
        names |= set(re.findall(r'env_if_set\("([A-Z0-9_]+)"\)', source.read_text()))
    names |= set(re.findall(r'^[A-Z_]+_ENV = "([A-Z0-9_]+)"', (package / "settings.py").read_text(), re.M))
    return names


def test_compose_passes_every_setting_the_orchestrator_reads():
    compose = yaml.safe_load((ROOT / "deploy/docker/docker-compose.yaml").read_text())
    passed = set(compose["x-dagster-env"])
    missing = _settings_the_orchestrator_reads() - passed
    assert not missing, f"deploy/docker/docker-compose.yaml's x-dagster-env lacks {sorted(missing)}"
