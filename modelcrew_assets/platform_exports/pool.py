"""Render many images across the machine's cores: one worker process per core, a bounded number of
images in flight (24 MP sources are large), results in input order."""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

from modelcrew_assets.imaging import ImageInputError
from modelcrew_assets.platform_exports.render import ExportSettings, Rendered, SourceImage, render_source

_RENDER_MODULE = "modelcrew_assets.platform_exports.render"


@dataclass(frozen=True)
class Outcome:
    source: SourceImage
    rendered: tuple[Rendered, ...] = ()
    error: str | None = None  # why the image was rejected, naming it


# Each worker holds a decoded photo (a 24 MP JPEG decodes to ~18 MB at half scale) plus its outputs.
MAX_WORKERS = 4


def default_workers() -> int:
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def export_many(
    sources: Iterable[SourceImage], settings: ExportSettings, workers: int | None = None
) -> Iterator[Outcome]:
    """Render every source for every platform; an unusable image becomes an Outcome with an error."""
    workers = workers or default_workers()
    if workers == 1:
        yield from (_outcome(source, settings) for source in sources)
        return
    # forkserver, not fork: the calling process (a Dagster run) has threads, and forking those is unsafe.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([_RENDER_MODULE])
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque[tuple[SourceImage, Future]] = deque()
        for source in sources:
            pending.append((source, pool.submit(_render, source, settings)))
            if len(pending) >= 2 * workers:
                yield _collect(*pending.popleft())
        while pending:
            yield _collect(*pending.popleft())


def _outcome(source: SourceImage, settings: ExportSettings) -> Outcome:
    rendered, error = _render(source, settings)
    return Outcome(source, rendered, error)


def _render(source: SourceImage, settings: ExportSettings) -> tuple[tuple[Rendered, ...], str | None]:
    try:
        return render_source(source, settings), None
    except ImageInputError as error:
        return (), str(error)


def _collect(source: SourceImage, future: Future) -> Outcome:
    rendered, error = future.result()
    return Outcome(source, rendered, error)
