"""The `modelcrew` command: upload a model's photos, upload the demo model, list models and their state,
review captions.

Exit codes: 0 done, 2 bad input (nothing was written). The command prints; the library code it calls logs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import dagster as dg

from modelcrew_assets.captions.review import (
    CaptionReviewError,
    current_captions,
    export_captions,
    read_edited_captions,
)
from modelcrew_assets.checkpoint_evaluations.download import CheckpointNotFoundError, download_checkpoint
from modelcrew_assets.handoffs import MissingUpstreamError, read_model_spec
from modelcrew_assets.intake.upload import SourceFile, UploadError, UploadReport, UploadRequest, plan_upload, upload
from modelcrew_assets.intake.upload_scan import group_uploads, is_junk_name
from modelcrew_assets.intake.zip_intake import ZipIntakeError, ZipLimits, read_model_zip, unpack_model_zip
from modelcrew_assets.manifest import ManifestError
from modelcrew_assets.partitions import models_partitions
from modelcrew_assets.resources.storage import DEFAULT_STORAGE_URL, StorageResource
from modelcrew_assets.settings import STORAGE_URL_ENV
from modelcrew_assets.storage_keys import UPLOADS

EXIT_OK = 0
EXIT_BAD_INPUT = 2
DEMO_MODEL = "demo"
DEFAULT_DAGSTER_HOME = Path(".modelcrew/dagster_home")


class CliInputError(ValueError):
    """A command line that cannot be carried out as given; the message says what to change."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (CliInputError, UploadError, ZipIntakeError) as error:
        print(f"modelcrew {args.command}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelcrew", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("upload", help="validate a model's files locally, then upload them")
    up.add_argument("model", help="model slug, e.g. blondie (the partition key)")
    up.add_argument("--face", type=Path, action="append", default=[], help="face image (repeatable)")
    up.add_argument("--targets", type=Path, help="folder of target photos (jpg/png/webp)")
    up.add_argument("--zip", type=Path, help="one zip with model.toml, face/ or face.*, targets/, captions/")
    up.add_argument("--manifest", type=Path, help="model.toml; without it one must already be in storage")
    up.add_argument("--trigger", help="make a manifest: trigger word")
    up.add_argument("--class-word", help="make a manifest: class word, e.g. woman")
    up.add_argument("--consent-by", help="make a manifest: who attests consent (e.g. an email)")
    up.add_argument("--consent-basis", choices=("synthetic", "licensed", "self"), help="make a manifest")
    up.set_defaults(handler=_upload_command)

    demo = commands.add_parser("demo", help=f"upload the bundled demo model ({DEMO_MODEL!r}); safe to repeat")
    demo.set_defaults(handler=_demo_command)

    models = commands.add_parser("models", help="list models: partition, uploads, last run and materializations")
    models.set_defaults(handler=_models_command)

    download = commands.add_parser(
        "download", help="write a model's chosen LoRA (or --step N) as <model>-<step>.safetensors, with a sidecar"
    )
    download.add_argument("model", help="model slug")
    download.add_argument("--step", type=int, help="a given training step instead of the chosen checkpoint")
    download.add_argument("--out", type=Path, default=Path("."), help="folder to write into (default: here)")
    download.set_defaults(handler=_download_command)

    captions = commands.add_parser(
        "captions", help="--export DIR: the current captions as <photo>.txt to edit; --import DIR: upload them back"
    )
    captions.add_argument("model", help="model slug")
    which = captions.add_mutually_exclusive_group(required=True)
    which.add_argument("--export", type=Path, metavar="DIR", help="write one <target stem>.txt per captioned photo")
    which.add_argument("--import", dest="import_dir", type=Path, metavar="DIR", help="upload edited .txt captions")
    captions.set_defaults(handler=_captions_command)
    return parser


def storage_from_env() -> StorageResource:
    return StorageResource(
        url=os.environ.get(STORAGE_URL_ENV) or DEFAULT_STORAGE_URL, region=os.environ.get("AWS_REGION") or None
    )


def _upload_command(args: argparse.Namespace) -> int:
    storage = storage_from_env()
    manifest = _manifest_from_args(args)
    if args.zip:
        if args.face or args.targets:
            raise CliInputError("--zip holds the face and targets; do not combine it with --face/--targets")
        data = _read(args.zip)
        report = unpack_model_zip(storage, args.model, data, str(args.zip), ZipLimits.from_env(), manifest)
    else:
        if not args.face and not args.targets:
            raise CliInputError("nothing to upload: give --face FILE and/or --targets DIR (or --zip FILE)")
        faces = tuple(SourceFile(str(path), _read(path)) for path in args.face)
        targets, ignored = _read_targets(args.targets) if args.targets else ((), ())
        report = upload(storage, UploadRequest(args.model, manifest, faces, targets, ignored=ignored))
    _print_report(report, storage)
    return EXIT_OK


def _demo_command(args: argparse.Namespace) -> int:
    storage = storage_from_env()
    folder = resources.files("modelcrew_assets.demo")
    targets = sorted(folder.joinpath("targets").iterdir(), key=lambda entry: entry.name)
    request = UploadRequest(
        model=DEMO_MODEL,
        manifest=SourceFile("demo/model.toml", folder.joinpath("model.toml").read_bytes()),
        faces=(SourceFile("demo/face.jpg", folder.joinpath("face.jpg").read_bytes()),),
        targets=tuple(SourceFile(f"demo/targets/{entry.name}", entry.read_bytes()) for entry in targets),
    )
    _print_report(upload(storage, request), storage)
    return EXIT_OK


def _manifest_from_args(args: argparse.Namespace) -> SourceFile | None:
    flags = {
        "--trigger": args.trigger,
        "--class-word": args.class_word,
        "--consent-by": args.consent_by,
        "--consent-basis": args.consent_basis,
    }
    given = [flag for flag, value in flags.items() if value]
    if not given:
        return SourceFile(str(args.manifest), _read(args.manifest)) if args.manifest else None
    if args.manifest:
        raise CliInputError(f"give either --manifest or {', '.join(given)}, not both")
    missing = [flag for flag, value in flags.items() if not value]
    if missing:
        raise CliInputError(f"to make a manifest, also give {', '.join(missing)}")
    # json.dumps quotes a string the way TOML's basic strings do.
    text = (
        f"[model]\nname = {json.dumps(args.model)}\ntrigger = {json.dumps(args.trigger)}\n"
        f"class_word = {json.dumps(args.class_word)}\n\n"
        f"[consent]\nattested_by = {json.dumps(args.consent_by)}\nbasis = {json.dumps(args.consent_basis)}\n"
    )
    return SourceFile("model.toml (from --trigger/--class-word/--consent-* flags)", text.encode("utf-8"))


def _read_targets(folder: Path) -> tuple[tuple[SourceFile, ...], tuple[str, ...]]:
    if not folder.is_dir():
        raise CliInputError(f"--targets {folder}: not a folder; give the folder that holds the target photos")
    files, ignored = [], []
    for path in sorted(folder.iterdir()):
        if is_junk_name(path.name):
            continue
        if path.is_dir():
            ignored.append(f"{path}: a subfolder; only files directly in {folder} are uploaded")
        else:
            files.append(SourceFile(str(path), _read(path)))
    return tuple(files), tuple(ignored)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CliInputError(f"{path}: cannot read it ({error.strerror}); check the path") from None


def _print_report(report: UploadReport, storage: StorageResource) -> None:
    for key in report.uploaded:
        print(f"uploaded   {key}")
    for source, key in report.duplicates:
        print(f"duplicate  {source}: same content already stored as {key}; skipped")
    for key in report.unchanged:
        print(f"unchanged  {key}")
    for item in report.ignored:
        print(f"ignored    {item}")
    print(
        f"{report.model}: {len(report.uploaded)} uploaded, {len(report.duplicates)} duplicates skipped, "
        f"{len(report.unchanged)} unchanged, into {storage.uri(f'{UPLOADS}/{report.model}')}"
    )


def _models_command(args: argparse.Namespace) -> int:
    from modelcrew_assets.definitions import defs

    storage = storage_from_env()
    statuses = model_statuses(_instance(), storage, defs)
    if not statuses:
        print(f"no models yet: nothing under {storage.uri(UPLOADS)}; try `modelcrew demo`")
    for status in statuses:
        print(f"{status.model}: {status.state}; last run: {status.last_run}")
        for asset, last in status.assets:
            print(f"  {asset:<28} {last}")
    return EXIT_OK


def _download_command(args: argparse.Namespace) -> int:
    try:
        lora = download_checkpoint(storage_from_env(), args.model, args.out, args.step)
    except (CheckpointNotFoundError, MissingUpstreamError) as error:
        raise CliInputError(str(error)) from None
    which = "the chosen checkpoint" if lora.chosen else "the checkpoint asked for"
    print(f"{lora.weights}: {which}, step {lora.step}; trigger word and weight in {lora.sidecar}")
    if lora.dry_run:
        print("note: this LoRA comes from a dry run (a stand-in file); no generator can load it")
    return EXIT_OK


def _captions_command(args: argparse.Namespace) -> int:
    storage = storage_from_env()
    try:
        if args.export:
            for path in export_captions(storage, args.model, args.export):
                print(f"wrote      {path}")
            print(f"{args.model}: edit the .txt files, then `modelcrew captions {args.model} --import {args.export}`")
            return EXIT_OK
        spec = read_model_spec(storage, args.model)
        edited = read_edited_captions(spec, args.import_dir, current_captions(storage, args.model))
    except (CaptionReviewError, MissingUpstreamError, ManifestError) as error:
        raise CliInputError(str(error)) from None
    for note in edited.fixed:
        print(f"fixed      {note}")
    _print_report(upload(storage, UploadRequest(args.model, captions=edited.files)), storage)
    return EXIT_OK


@dataclass(frozen=True)
class ModelStatus:
    model: str
    state: str
    last_run: str
    # (asset key, when it was last materialized or observed for this model)
    assets: tuple[tuple[str, str], ...]


def model_statuses(instance: dg.DagsterInstance, storage: StorageResource, defs: dg.Definitions) -> list[ModelStatus]:
    """Every model Dagster knows (a `models` partition) or storage holds (uploads/<model>/ or .zip)."""
    graph = defs.resolve_asset_graph()
    objects = list(storage.list(f"{UPLOADS}/"))
    uploads = group_uploads(objects).models
    zips = {
        obj.key[len(UPLOADS) + 1 : -len(".zip")]
        for obj in objects
        if obj.key.count("/") == 1 and obj.key.endswith(".zip")
    }
    partitions = set(instance.get_dynamic_partitions(models_partitions.name))
    statuses = []
    for model in sorted(partitions | set(uploads) | zips):
        state = "registered" if model in partitions else "not registered"
        found = uploads.get(model)
        if model not in partitions and found is not None and found.missing:
            state += f" (waiting for {', '.join(found.missing)})"
        elif model not in partitions and found is None:
            state += f" ({_zip_state(storage, model)})"
        assets = tuple(
            (key.to_user_string(), _last_event(instance, key, model, graph.get(key).is_materializable))
            for key in graph.toposorted_asset_keys
        )
        statuses.append(ModelStatus(model, state, _last_run(instance, model), assets))
    return statuses


def _zip_state(storage: StorageResource, model: str) -> str:
    """Why uploads/<model>.zip has no folder yet: the sensor refuses it (the same checks, run here without
    writing anything) or has not reached it."""
    key = f"{UPLOADS}/{model}.zip"
    try:
        plan_upload(storage, read_model_zip(storage.get_bytes(key), key, ZipLimits.from_env()).request(model))
    except (ZipIntakeError, UploadError) as error:
        return f"{key} refused: {error}"
    return f"{key} not unpacked yet"


def _instance() -> dg.DagsterInstance:
    if not os.environ.get("DAGSTER_HOME"):
        if not DEFAULT_DAGSTER_HOME.is_dir():
            raise CliInputError(
                f"DAGSTER_HOME is not set and {DEFAULT_DAGSTER_HOME} does not exist; run `bash scripts/dev.sh` "
                "once, or set DAGSTER_HOME to the Dagster instance folder"
            )
        os.environ["DAGSTER_HOME"] = str(DEFAULT_DAGSTER_HOME.resolve())
    return dg.DagsterInstance.get()


def _last_run(instance: dg.DagsterInstance, model: str) -> str:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": model}), limit=1)
    if not runs:
        return "none"
    record = instance.get_run_record_by_id(runs[0].run_id)
    when = record.create_timestamp.astimezone(UTC) if record else None
    return f"{runs[0].status.value}" + (f" (started {when:%Y-%m-%d %H:%M} UTC)" if when else "")


def _last_event(instance: dg.DagsterInstance, key: dg.AssetKey, model: str, materializable: bool) -> str:
    records_filter = dg.AssetRecordsFilter(asset_key=key, asset_partitions=[model])
    if materializable:
        found, verb = instance.fetch_materializations(records_filter, limit=1).records, "materialized"
    else:
        found, verb = instance.fetch_observations(records_filter, limit=1).records, "observed"
    if not found:
        return f"never {verb}"
    return f"{verb} {datetime.fromtimestamp(found[0].timestamp, tz=UTC):%Y-%m-%d %H:%M:%S} UTC"
