"""One reader of .safetensors headers (onetwo.kohya.safetensors_header) behind `inspect`, the stage-2 hand-off, the
hashes and the base-model check, with the header limit safetensors itself enforces."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from onetwo.errors import OnetwoError
from onetwo.kohya import hashes
from onetwo.kohya.base_model import classify
from onetwo.kohya.provenance import read_metadata

SAFETENSORS_LIMIT = 100_000_000  # safetensors' MAX_HEADER_SIZE: a longer header is HeaderTooLarge


def write_file(path: Path, metadata: dict[str, str]) -> Path:
    header = {"__metadata__": metadata,
              "lora_unet_a.lora_down.weight": {"dtype": "F16", "shape": [1], "data_offsets": [0, 2]},
              "lora_unet_a.lora_up.weight": {"dtype": "F16", "shape": [1], "data_offsets": [2, 4]}}
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"\x00" * 4)
    return path


def test_a_header_safetensors_opens_is_one_every_reader_opens(tmp_path: Path) -> None:
    """65 MiB of metadata (long embedded notes or previews do this): under safetensors' limit, so readable."""
    file = write_file(tmp_path / "big.safetensors", {"ss_network_dim": "8", "notes": "x" * (65 << 20)})
    assert read_metadata(file)["ss_network_dim"] == "8"
    assert classify(file).kind == "lora"
    model_hash, legacy_hash = hashes.compute(file)
    assert len(model_hash) == 64 and len(legacy_hash) == 8


def claiming(path: Path, length: int) -> Path:
    """A file whose first 8 bytes claim a header of `length` bytes that is not there."""
    path.write_bytes(struct.pack("<Q", length) + b"{}")
    return path


@pytest.mark.parametrize(("length", "too_large"), [(SAFETENSORS_LIMIT, False), (SAFETENSORS_LIMIT + 1, True)])
def test_the_limit_is_the_one_safetensors_enforces(tmp_path: Path, length: int, too_large: bool) -> None:
    """Up to the limit a missing header is a cut file; above it, no header at all (safetensors: HeaderTooLarge)."""
    file = claiming(tmp_path / "claims.safetensors", length)
    assert classify(file).kind == ("not_a_model" if too_large else "truncated")
    with pytest.raises(OnetwoError, match=r"not a readable \.safetensors file"):
        read_metadata(file)
    safetensors = pytest.importorskip("safetensors")
    with pytest.raises(Exception, match="HeaderTooLarge" if too_large else "InvalidHeaderLength"):
        safetensors.safe_open(str(file), "np")
