"""manifest.csv: one row per exported file, in the column layout a scheduler import expects."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

COLUMNS = (
    "file",
    "platform",
    "width",
    "height",
    "sha256",
    "prompt",
    "suggested_caption",
    "hashtags",
    "ai_generated",
    "dry_run",
)


@dataclass(frozen=True)
class ManifestRow:
    file: str  # file name, relative to the manifest.csv beside it
    platform: str
    width: int
    height: int
    sha256: str
    prompt: str
    suggested_caption: str
    hashtags: tuple[str, ...]
    dry_run: bool  # made by simulated providers: not for posting


def manifest_csv(rows: list[ManifestRow]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(
            [
                row.file,
                row.platform,
                row.width,
                row.height,
                row.sha256,
                row.prompt,
                row.suggested_caption,
                " ".join(row.hashtags),
                "true",
                "true" if row.dry_run else "false",
            ]
        )
    return buffer.getvalue().encode("utf-8")


def read_manifest_csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
