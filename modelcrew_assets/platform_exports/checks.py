"""The stage's asset checks, computed from the files in storage (not from what the run believes it wrote)."""

from __future__ import annotations

import io

import dagster as dg
from PIL import Image

from modelcrew_assets.handoffs import PlatformExports
from modelcrew_assets.platform_exports.labels import AI_SOURCE_TYPES, read_digital_source_type
from modelcrew_assets.platform_exports.platforms import Platform
from modelcrew_assets.platform_exports.scheduler_csv import read_manifest_csv
from modelcrew_assets.resources.storage import StorageResource

EXACT_SIZES = "exports_have_exact_platform_sizes"
EXACT_SIZES_MEANING = "Every export file has its platform's exact pixel size."
LABELLED = "exports_are_labelled_as_ai_content"
LABELLED_MEANING = (
    "Every export carries an IPTC AI DigitalSourceType in its XMP; every manifest row says ai_generated=true."
)
_SHOWN = 10


def check_exports(
    storage: StorageResource, index: PlatformExports, platforms: tuple[Platform, ...]
) -> list[dg.AssetCheckResult]:
    sizes = {platform.name: platform.size for platform in platforms}
    wrong_size, unlabelled = [], []
    for export in index.exports:
        data = storage.get_bytes(export.key)
        actual = Image.open(io.BytesIO(data)).size
        if actual != sizes.get(export.platform):
            wrong_size.append(f"{export.key} is {actual[0]}x{actual[1]}, not {sizes.get(export.platform)}")
        if read_digital_source_type(data) not in AI_SOURCE_TYPES:
            unlabelled.append(f"{export.key} has no AI DigitalSourceType in its XMP")
    for key in index.manifests:
        rows = read_manifest_csv(storage.get_bytes(key))
        unlabelled += [
            f"{key}: {row['file']} has ai_generated={row['ai_generated']}"
            for row in rows
            if row["ai_generated"] != "true"
        ]
    return [
        _result(EXACT_SIZES, wrong_size, len(index.exports), EXACT_SIZES_MEANING),
        _result(LABELLED, unlabelled, len(index.exports), LABELLED_MEANING),
    ]


def _result(name: str, problems: list[str], checked: int, meaning: str) -> dg.AssetCheckResult:
    metadata = {"files_checked": checked, "problems": len(problems)}
    if problems:
        metadata["examples"] = dg.MetadataValue.md("\n".join(f"- {problem}" for problem in problems[:_SHOWN]))
    return dg.AssetCheckResult(check_name=name, passed=not problems, description=meaning, metadata=metadata)
