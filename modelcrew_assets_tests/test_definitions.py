import subprocess
import sys
from pathlib import Path

import dagster as dg

from modelcrew_assets.definitions import defs

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    repository = defs.get_repository_def()
    assert repository.get_sensor_def("model_uploads_sensor")
    assert repository.get_job("model_pipeline")


def test_every_asset_is_partitioned_by_models():
    for spec in defs.resolve_all_asset_specs():
        assert spec.partitions_def is not None and spec.partitions_def.name == "models", spec.key


def _validate_workspace(env: dict[str, str]) -> None:
    dagster = Path(sys.executable).with_name("dagster")
    completed = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env={"PATH": str(dagster.parent), **env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_dagster_cli_validates_the_workspace(tmp_path):
    _validate_workspace({"DAGSTER_HOME": str(tmp_path), "HOME": str(tmp_path)})


def test_dagster_cli_validates_the_checkout_without_dagster_home(tmp_path):
    """A newcomer's first `dagster definitions validate` in the checkout, with no DAGSTER_HOME: Dagster makes a
    temporary home and reads the checkout's dagster.yaml, which must not need the variable."""
    _validate_workspace({"HOME": str(tmp_path)})


def test_only_the_selection_module_reads_the_dry_run_switch():
    """Providers are chosen once (resources/selection.py); no asset or stage looks at the mode itself."""
    package = ROOT / "modelcrew_assets"
    readers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "dry_run_from_env" in path.read_text() or "DRY_RUN_ENV" in path.read_text()
    )
    assert readers == ["resources/selection.py", "settings.py"]


# Storage-only modules: they take the `Storage` protocol, so importing one needs neither Dagster nor any stage's
# assets (the stage packages' __init__ modules import nothing).
PURE_MODULES = [
    "modelcrew_assets.handoffs",
    "modelcrew_assets.swapped_faces.ledger",
    "modelcrew_assets.swapped_faces.inputs",
    "modelcrew_assets.swapped_faces.curation",
    "modelcrew_assets.platform_exports.stage",
    "modelcrew_assets.scheduled_posts.ledger",
    "modelcrew_assets.generated_reels.ledger",
    "modelcrew_assets.generated_batches.progress",
    "modelcrew_assets.checkpoint_evaluations.selection",
    "modelcrew_assets.checkpoint_evaluations.download",
]


def test_storage_only_modules_import_without_dagster():
    code = f"import sys\nfor name in {PURE_MODULES!r}: __import__(name)\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster')[:3])"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]", f"imported Dagster: {completed.stdout}"
