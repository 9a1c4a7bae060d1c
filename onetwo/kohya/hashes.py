"""The hashes AUTOMATIC1111 shows for a LoRA and Civitai links it by: `sshs_model_hash` and `sshs_legacy_hash`.

sd-scripts computes them for its own LoRAs (`train_util.precalculate_safetensors_hashes`): it serialises the
tensors with only the `ss_*` metadata through safetensors, then takes the SHA-256 of everything after the header
(model hash) and the first 8 hex digits of the SHA-256 of bytes 0x100000-0x10FFFF of that buffer (legacy hash).
LyCORIS writes its own `0x…` value instead. This module computes sd-scripts' values in pure Python from the file's
bytes (no torch) and rewrites only the header, so the tensors stay byte-identical.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from onetwo.errors import OnetwoError
from onetwo.fsutil import atomic_path
from onetwo.kohya import safetensors_header
from onetwo.kohya.safetensors_header import HeaderError, Layout, serialise_header

MODEL_HASH_KEY = "sshs_model_hash"
LEGACY_HASH_KEY = "sshs_legacy_hash"
LEGACY_WINDOW = (0x100000, 0x10000)  # (offset, length) in the serialised buffer, header included
BLOCK = 1 << 20
# safetensors writes tensors sorted by dtype, largest first in this order (its Rust enum, descending), then by
# name; the order was read off safetensors 0.8 and agrees with older releases for every dtype listed.
DTYPE_ORDER = ("U64", "I64", "F64", "F32", "U32", "I32", "BF16", "F16", "U16", "I16", "F8_E4M3", "F8_E5M2", "I8",
               "U8", "BOOL")


@dataclass(frozen=True)
class Rehash:
    path: Path
    model_hash: str
    legacy_hash: str
    rewritten: bool  # False: the file already carried these values


def read_layout(handle: BinaryIO, path: Path) -> Layout:
    try:
        return safetensors_header.read_layout(handle)
    except HeaderError as exc:
        raise OnetwoError(f"{path}: not a readable .safetensors file ({exc}); train it again") from exc


def canonical_order(tensors: dict[str, dict[str, Any]], path: Path) -> list[str]:
    unknown = sorted({str(info.get("dtype")) for info in tensors.values()} - set(DTYPE_ORDER))
    if unknown:
        raise OnetwoError(f"{path}: dtype {', '.join(unknown)} is not one onetwo can hash as safetensors orders it")
    return sorted(tensors, key=lambda name: (DTYPE_ORDER.index(tensors[name]["dtype"]), name.encode("utf-8")))


def canonical_header(layout: Layout, path: Path) -> tuple[bytes, list[str]]:
    """What safetensors.torch.save(tensors, ss_metadata) writes before the data, and the tensors in its order."""
    tensors = layout.tensors
    order = canonical_order(tensors, path)
    header: dict[str, Any] = {"__metadata__": {k: v for k, v in layout.metadata.items() if k.startswith("ss_")}}
    offset = 0
    for name in order:
        begin, end = tensors[name]["data_offsets"]
        header[name] = {"dtype": tensors[name]["dtype"], "shape": tensors[name]["shape"],
                        "data_offsets": [offset, offset + end - begin]}
        offset += end - begin
    return serialise_header(header), order


def data_blocks(handle: BinaryIO, layout: Layout, order: list[str], path: Path) -> Iterator[bytes]:
    """The tensor bytes in `order`, read from the file in blocks."""
    for name in order:
        begin, end = layout.tensors[name]["data_offsets"]
        handle.seek(layout.data_start + begin)
        left = end - begin
        while left:
            block = handle.read(min(BLOCK, left))
            if not block:
                raise OnetwoError(f"{path}: the file ends inside tensor {name!r}; train it again")
            left -= len(block)
            yield block


def compute(path: Path) -> tuple[str, str]:
    """(sshs_model_hash, sshs_legacy_hash) as sd-scripts computes them for this file's tensors and ss_* metadata."""
    with path.open("rb") as handle:
        layout = read_layout(handle, path)
        head, order = canonical_header(layout, path)
        model = hashlib.sha256()
        start, length = LEGACY_WINDOW
        window = bytearray(head[start:start + length])
        position = len(head)
        for block in data_blocks(handle, layout, order, path):
            model.update(block)
            if position + len(block) > start and len(window) < length:
                window += block[max(start - position, 0):][:length - len(window)]
            position += len(block)
    # A buffer shorter than the window hashes what is there (nothing, for files under 1 MiB), as sd-scripts does.
    return model.hexdigest(), hashlib.sha256(bytes(window)).hexdigest()[:8]


def rewrite_metadata(path: Path, updates: dict[str, str]) -> None:
    """Replace metadata values in the header, atomically; the tensor bytes are copied unchanged."""
    with path.open("rb") as handle:
        layout = read_layout(handle, path)
        header = dict(layout.header)
        header["__metadata__"] = {**layout.metadata, **updates}
        with atomic_path(path) as tmp:
            with tmp.open("wb") as out:
                out.write(serialise_header(header))
                handle.seek(layout.data_start)
                shutil.copyfileobj(handle, out, BLOCK)
            shutil.copymode(path, tmp)  # the temporary file is private (0600); the LoRA keeps its permissions


def rehash(path: Path) -> Rehash:
    """Set the file's sshs_* metadata to sd-scripts' values; leave it untouched when they are already there."""
    model_hash, legacy_hash = compute(path)
    with path.open("rb") as handle:
        metadata = read_layout(handle, path).metadata
    wanted = {MODEL_HASH_KEY: model_hash, LEGACY_HASH_KEY: legacy_hash}
    stale = any(metadata.get(key) != value for key, value in wanted.items())
    if stale:
        rewrite_metadata(path, wanted)
    return Rehash(path, model_hash, legacy_hash, stale)


def epoch_files(output_dir: Path, output_name: str) -> list[Path]:
    """The final file and kohya's per-epoch saves (<output_name>-<epoch:06d>.safetensors) of one training run."""
    epoch_stem = re.compile(re.escape(output_name) + r"-\d{6}")
    saves = [path for path in output_dir.glob("*.safetensors") if epoch_stem.fullmatch(path.stem)]
    final = output_dir / f"{output_name}.safetensors"
    return sorted(saves) + ([final] if final.is_file() else [])


def rehash_trained(flat_config: dict[str, Any]) -> list[str]:
    """After a training run: set sd-scripts' hashes in every file it saved; one line per file for the user."""
    output_dir, output_name = Path(flat_config["output_dir"]), str(flat_config["output_name"])
    lines = []
    for path in epoch_files(output_dir, output_name):
        try:
            done = rehash(path)
        except OnetwoError as exc:
            lines.append(f"Warning: {MODEL_HASH_KEY} not set: {exc}")
            continue
        verb = "set" if done.rewritten else "already had"
        lines.append(f"{path.name}: {verb} {MODEL_HASH_KEY} {done.model_hash[:12]}…, {LEGACY_HASH_KEY} "
                     f"{done.legacy_hash} (the hashes AUTOMATIC1111 and Civitai use)")
    return lines
