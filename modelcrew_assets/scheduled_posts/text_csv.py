"""The caption CSV round trip: each run writes models/<m>/scheduled_posts/post_texts.csv (one row per
approved export and platform, with the caption it has or will get); a person edits the `caption` column and
uploads the file as uploads/<m>/posting/post_texts.csv. Edited captions are used for posts not yet sent to
the service (the disclosure and hashtags are still added); posts already created keep their text."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from modelcrew_assets.object_store import Storage
from modelcrew_assets.storage_keys import asset_prefix, upload_prefix

COLUMNS = ("export_id", "platform", "file", "state", "caption")


@dataclass(frozen=True)
class TextRow:
    export_id: str
    platform: str
    file: str
    state: str  # waiting, or the ledger state
    caption: str


def written_key(model: str) -> str:
    return f"{asset_prefix(model, 'scheduled_posts')}post_texts.csv"


def edited_key(model: str) -> str:
    return f"{upload_prefix(model)}posting/post_texts.csv"


def texts_csv(rows: list[TextRow]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([row.export_id, row.platform, row.file, row.state, row.caption] for row in rows)
    return buffer.getvalue().encode("utf-8")


def edited_captions(storage: Storage, model: str) -> dict[tuple[str, str], str]:
    """(export id, platform) -> the caption a person wrote; empty captions are ignored."""
    try:
        text = storage.get_bytes(edited_key(model)).decode("utf-8-sig")
    except KeyError:
        return {}
    rows = csv.DictReader(io.StringIO(text))
    missing = [column for column in ("export_id", "platform", "caption") if column not in (rows.fieldnames or ())]
    if missing:
        raise ValueError(
            f"{edited_key(model)}: columns {missing} are missing; start from {written_key(model)} and edit its "
            "caption column only"
        )
    return {(row["export_id"], row["platform"]): row["caption"].strip() for row in rows if row["caption"].strip()}
