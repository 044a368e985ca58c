"""Captions a person reviews: the current captions written out as `<target stem>.txt` files to edit, and the
edited files read back as hand captions (uploaded through the usual upload path to uploads/<m>/captions/,
where they win over generated ones on the next run). Pure file work; the CLI prints and uploads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from modelcrew_assets.captions.text import normalize_caption, starts_with_trigger_once
from modelcrew_assets.handoffs import Captions, SwappedFaces, read_index
from modelcrew_assets.intake.upload import SourceFile
from modelcrew_assets.intake.upload_scan import is_junk_name
from modelcrew_assets.manifest import ModelSpec
from modelcrew_assets.object_store import Storage

CAPTION_SUFFIX = ".txt"


class CaptionReviewError(ValueError):
    """Captions that cannot be exported or read back; the message says what to change."""


@dataclass(frozen=True)
class EditedCaptions:
    files: tuple[SourceFile, ...]
    fixed: tuple[str, ...]  # what was repaired on the way back, one line per file


def current_captions(storage: Storage, model: str) -> dict[str, str]:
    """The captions of the last captions run, by the stem of the photo each was made for (as uploaded)."""
    items = read_index(storage, model, Captions).items
    targets = {image.key: image.target_key for image in read_index(storage, model, SwappedFaces).images}
    return {PurePosixPath(targets.get(item.image_key, item.image_key)).stem: item.caption for item in items}


def export_captions(storage: Storage, model: str, folder: Path) -> list[Path]:
    """One `<target stem>.txt` per captioned photo, named after the photo as it was uploaded (so the file
    finds its photo again on the way back). Refuses to overwrite a file that says something else."""
    planned = {folder / f"{stem}{CAPTION_SUFFIX}": text for stem, text in current_captions(storage, model).items()}
    edited = [path for path, text in planned.items() if path.exists() and path.read_text("utf-8").strip() != text]
    if edited:
        raise CaptionReviewError(
            f"{folder} already holds other captions ({', '.join(p.name for p in edited[:5])}); "
            "import them first, or export into an empty folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in planned.items():
        path.write_text(text + "\n", "utf-8")
    return sorted(planned)


def read_edited_captions(spec: ModelSpec, folder: Path, current: dict[str, str]) -> EditedCaptions:
    """The folder's .txt captions that differ from `current` (unchanged ones stay generated, so a better
    prompt can still improve them); a caption whose trigger word was lost or moved gets it back first."""
    if not folder.is_dir():
        raise CaptionReviewError(f"{folder}: not a folder; give the folder `--export` wrote")
    files, fixed = [], []
    for path in sorted(folder.iterdir()):
        if path.suffix != CAPTION_SUFFIX or is_junk_name(path.name):
            continue
        try:
            text = path.read_text("utf-8").strip()
        except UnicodeDecodeError:
            raise CaptionReviewError(f"{path}: not UTF-8 text; save it as UTF-8") from None
        if text == current.get(path.stem):
            continue
        if text and not starts_with_trigger_once(text, spec.trigger):
            text = normalize_caption(text, spec.trigger, spec.model.class_word)
            fixed.append(f"{path.name}: the trigger word {spec.trigger!r} was missing or not first; now: {text!r}")
        files.append(SourceFile(str(path), (text + "\n").encode() if text else b""))
    if not files:
        raise CaptionReviewError(f"{folder}: no edited .txt captions in it; edit what --export wrote first")
    return EditedCaptions(tuple(files), tuple(fixed))
