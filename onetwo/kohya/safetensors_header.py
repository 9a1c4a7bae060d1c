"""The header of a .safetensors file, read and written without torch: the one reader `base_model`, `hashes` and
`provenance` share.

The format: an 8-byte little-endian length, that many bytes of JSON (`__metadata__` and one entry per tensor with
its dtype, shape and data_offsets), then the tensor data.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

# safetensors itself refuses a longer header (HeaderTooLarge above 100,000,000 bytes), so no loader could open such
# a file; the bound also keeps a stray file from making onetwo read gigabytes as JSON.
MAX_HEADER_BYTES = 100_000_000


class HeaderError(ValueError):
    """Not a readable safetensors header; `truncated`: the file ends before the header does."""

    def __init__(self, reason: str, truncated: bool = False) -> None:
        super().__init__(reason)
        self.truncated = truncated


@dataclass(frozen=True)
class Layout:
    """A .safetensors file as stored: its parsed header and where the tensor data starts."""

    header: dict[str, Any]
    data_start: int

    @property
    def metadata(self) -> dict[str, str]:
        metadata = self.header.get("__metadata__")
        return dict(metadata) if isinstance(metadata, dict) else {}

    @property
    def tensors(self) -> dict[str, dict[str, Any]]:
        return {name: info for name, info in self.header.items() if name != "__metadata__" and isinstance(info, dict)}

    @property
    def data_end(self) -> int:
        """The byte after the last tensor, as the header places them."""
        ends = (info.get("data_offsets") for info in self.tensors.values())
        return self.data_start + max((offsets[1] for offsets in ends if isinstance(offsets, list) and len(offsets) == 2
                                      and isinstance(offsets[1], int)), default=0)


def read_layout(handle: BinaryIO) -> Layout:
    """The header at the start of `handle`; HeaderError says what is wrong with it."""
    head = handle.read(8)
    size = handle.seek(0, 2)
    if len(head) < 8:
        raise HeaderError(f"{size} bytes, shorter than a safetensors header", truncated=True)
    (length,) = struct.unpack("<Q", head)
    if not 0 < length <= MAX_HEADER_BYTES:
        raise HeaderError(f"no safetensors header (its first 8 bytes give a length of {length})")
    if 8 + length > size:
        raise HeaderError(f"its header says {length} bytes of JSON, the file holds {size - 8}", truncated=True)
    handle.seek(8)
    try:
        header = json.loads(handle.read(length))
    except ValueError as exc:  # UnicodeDecodeError included
        raise HeaderError(f"its safetensors header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise HeaderError("its safetensors header is not a table of tensors")
    return Layout(header, 8 + length)


def read_header(path: Path) -> Layout:
    """read_layout of a file; OSError when it cannot be opened."""
    with path.open("rb") as handle:
        return read_layout(handle)


def serialise_header(header: dict[str, Any]) -> bytes:
    """The 8-byte length and the JSON header as safetensors writes them: compact, UTF-8, padded with spaces to a
    multiple of 8 so the tensor data stays aligned."""
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text
