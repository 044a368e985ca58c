"""Reading a safetensors file's header (8-byte little-endian length + JSON) without loading tensors."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

MAX_HEADER_BYTES = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    """Bytes that are not (or not yet) a whole safetensors file."""


@dataclass(frozen=True)
class SafetensorsHeader:
    tensors: dict[str, dict]  # name -> {"dtype", "shape", "data_offsets"}
    metadata: dict[str, str]
    header_size: int
    data_size: int

    @property
    def total_size(self) -> int:
        return 8 + self.header_size + self.data_size


def parse_header(prefix: bytes) -> SafetensorsHeader:
    """Parse the header from the first bytes of a file (at least 8 + header length bytes)."""
    if len(prefix) < 8:
        raise SafetensorsError("shorter than the 8-byte header length")
    (header_size,) = struct.unpack("<Q", prefix[:8])
    if header_size > MAX_HEADER_BYTES:
        raise SafetensorsError(f"header length {header_size} is implausible")
    if len(prefix) < 8 + header_size:
        raise SafetensorsError("the header is cut short")
    try:
        header = json.loads(prefix[8 : 8 + header_size])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SafetensorsError(f"header is not JSON ({error})") from None
    if not isinstance(header, dict):
        raise SafetensorsError("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data_size = 0
    for name, info in header.items():
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and 0 <= offsets[0] <= offsets[1]):
            raise SafetensorsError(f"tensor {name!r} has no valid data_offsets")
        data_size = max(data_size, offsets[1])
    return SafetensorsHeader(tensors=header, metadata=dict(metadata), header_size=header_size, data_size=data_size)


def read_header(path: Path) -> SafetensorsHeader:
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise SafetensorsError(f"{path.name}: shorter than the 8-byte header length")
        (header_size,) = struct.unpack("<Q", head)
        if header_size > MAX_HEADER_BYTES:
            raise SafetensorsError(f"{path.name}: header length {header_size} is implausible")
        return parse_header(head + handle.read(header_size))


def is_complete(path: Path) -> bool:
    """True when the file holds its whole header and every tensor's bytes (a trainer may still be writing)."""
    try:
        return path.stat().st_size == read_header(path).total_size
    except (OSError, SafetensorsError):
        return False
