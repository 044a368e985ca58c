"""Shared fixtures: storages (local and moto S3), face images, model uploads, a Dagster instance."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.defs_state.base import set_defs_state_storage
from PIL import Image

from modelcrew_assets.resources.storage import StorageResource
from modelcrew_assets_tests.fakes.aws_env import use_test_aws_environment

# Fakes register their fixtures here, one module each.
pytest_plugins = [
    "modelcrew_assets_tests.fakes.s3",
    "modelcrew_assets_tests.fakes.sqs",
    "modelcrew_assets_tests.fakes.runpod",
    "modelcrew_assets_tests.fakes.webhook",
    "modelcrew_assets_tests.fakes.maxstudio",
    "modelcrew_assets_tests.fakes.openai_compatible",
    "modelcrew_assets_tests.fakes.buffer",
    "modelcrew_assets_tests.fakes.buffer_metrics",
    "modelcrew_assets_tests.fakes.runway",
    "modelcrew_assets_tests.fakes.fal",
]

use_test_aws_environment()
for _credential in (
    "MAXSTUDIO_API_KEY",
    "CAPTION_API_KEY",
    "RUNPOD_API_KEY",
    "BUFFER_API_KEY",
    "MODELCREW_DRY_RUN",
    "RUNWAYML_API_SECRET",
    "FAL_KEY",
):
    os.environ.pop(_credential, None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first: the workers start on them while the short ones are left to share, so no long test
    begins near the end and runs on alone (scripts/test.sh runs `pytest -n 3 --dist worksteal`)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def local_storage(tmp_path: Path) -> StorageResource:
    return StorageResource(url=f"file://{tmp_path / 'storage'}")


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest) -> StorageResource:
    """The same test against local disk and against S3 (moto server)."""
    return request.getfixturevalue(f"{request.param}_storage")


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    """scikit-image's astronaut: a public-domain portrait (NASA) with one clear face."""
    from skimage import data

    return Image.fromarray(data.astronaut())


# Capturing each step's stdout to files costs about half a second per in-process run (measured 0.69 s ->
# 0.16 s a run); in-process tests read events, not compute logs (the end-to-end tests keep them, and check them).
NO_COMPUTE_LOGS = {"module": "dagster._core.storage.noop_compute_log_manager", "class": "NoOpComputeLogManager"}


@pytest.fixture(autouse=True)
def no_defs_state_storage_left_behind() -> Iterator[None]:
    """Each test starts and ends with no current defs-state storage. Entering an instance sets Dagster's
    context variable for it, and an instance entered again inside Dagster (schedule contexts, failed runs)
    exits leaving it set, so a later test's materialize resolved a disposed instance ("undefined
    DagsterInstance weakref", or the deleted runs.db of a finished test)."""
    with set_defs_state_storage(None):
        yield


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(overrides={"compute_logs": NO_COMPUTE_LOGS}) as test_instance:
        yield test_instance
