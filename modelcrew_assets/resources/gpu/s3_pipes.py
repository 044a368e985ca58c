"""Pipes over S3 for RunPod pods: the stock injector, and a reader that keeps up with a chatty worker."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster_aws.pipes import PipesS3ContextInjector, PipesS3MessageReader

__all__ = ["DrainingS3MessageReader", "PipesS3ContextInjector"]


class DrainingS3MessageReader(PipesS3MessageReader):
    """Reads every chunk already written at each poll; the stock reader takes one chunk per poll and
    falls behind a worker that writes often. Messages go under `key_prefix` (the stock reader puts them
    at the bucket root)."""

    def __init__(self, *, key_prefix: str = "", **kwargs: Any):
        super().__init__(**kwargs)
        self.key_prefix = key_prefix

    @contextmanager
    def get_params(self) -> Iterator[dict]:
        with super().get_params() as params:
            yield {**params, "key_prefix": self.key_prefix + params["key_prefix"]}

    def download_messages(self, cursor: int | None, params: dict) -> tuple[int, str] | None:
        chunks = []
        while (chunk := self.download_messages_chunk(self.counter, params)) is not None:
            chunks.append(chunk)
            self.counter += 1
        return (self.counter, "\n".join(chunks)) if chunks else None
