"""The asset graph as data (keys, deps, groups, kinds, partitions, pools, checks, jobs, sensors, schedules),
compared with the committed snapshot so that a dependency or naming drift shows up as a reviewable diff.

After an intended change: MODELCREW_UPDATE_SNAPSHOT=1 pytest modelcrew_assets_tests/test_asset_graph_snapshot.py"""

import difflib
import json
import os
from pathlib import Path

import dagster as dg

from modelcrew_assets.definitions import defs

SNAPSHOT = Path(__file__).with_name("snapshots") / "asset_graph.json"
UPDATE_ENV = "MODELCREW_UPDATE_SNAPSHOT"


def _partitions_name(partitions_def: dg.PartitionsDefinition | None) -> str | None:
    if partitions_def is None:
        return None
    return getattr(partitions_def, "name", None) or type(partitions_def).__name__


def _asset_entries() -> dict[str, dict]:
    graph = defs.resolve_asset_graph()
    entries = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        entries[key.to_user_string()] = {
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "partitions": _partitions_name(node.partitions_def),
            "pools": sorted(node.pools or ()),
            "materializable": node.is_materializable,
            "checks": sorted(check.name for check in node.check_keys),
            "owners": sorted(node.owners),
        }
    return entries


def _steps() -> dict[str, list[str]]:
    """What each step (op) produces: a merge of checks into one multi_asset_check, or a split, shows up here."""
    steps = {}
    for assets_def in defs.resolve_asset_graph().assets_defs:
        if not assets_def.is_executable:
            continue
        produced = [key.to_user_string() for key in assets_def.keys] + [
            key.to_user_string() for key in assets_def.check_keys
        ]
        steps[assets_def.node_def.name] = sorted(produced)
    return dict(sorted(steps.items()))


def graph_snapshot() -> dict:
    repository = defs.get_repository_def()
    return {
        "assets": _asset_entries(),
        "steps": _steps(),
        # job -> how its steps start (the forkserver executor, or a deliberate exception)
        "jobs": {job.name: job.executor_def.name for job in sorted(repository.get_all_jobs(), key=lambda j: j.name)},
        "sensors": sorted(sensor.name for sensor in repository.sensor_defs),
        "schedules": sorted(schedule.name for schedule in repository.schedule_defs),
        "resources": sorted(defs.resources or {}),
    }


def test_asset_graph_matches_the_committed_snapshot():
    current = json.dumps(graph_snapshot(), indent=2, sort_keys=True) + "\n"
    if os.environ.get(UPDATE_ENV):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(current)
    committed = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    diff = "".join(
        difflib.unified_diff(committed.splitlines(True), current.splitlines(True), str(SNAPSHOT), "current graph")
    )
    assert not diff, f"the asset graph changed; if that was intended, rerun with {UPDATE_ENV}=1\n{diff}"
