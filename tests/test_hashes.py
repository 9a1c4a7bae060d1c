"""onetwo.kohya.hashes: sd-scripts' sshs_model_hash / sshs_legacy_hash, computed in pure Python, written into the header
only. The reference is safetensors' own serialiser (and, where importable, sd-scripts' own function)."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from onetwo.errors import OnetwoError
from onetwo.kohya import hashes
from tests.sdscripts import needs_sdscripts

np = pytest.importorskip("numpy", reason="numpy builds the test tensors (pip install -e '.[dev]')")
safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="safetensors is not installed (make setup)")

# What a LoRA saved by LyCORIS carries: ss_* training metadata, modelspec.*, and LyCORIS's own 0x… hash.
METADATA = {
    "ss_network_module": "lycoris.kohya", "ss_network_dim": "8",
    "ss_tag_frequency": json.dumps({"aoi": {"1girl": 2, "blue hair": 2}}),
    "ss_training_comment": 'escapes: "quoted", back\\slash, tab\t, newline\n, control \x01, non-ASCII é 日本',
    "modelspec.title": "not hashed", "sshs_model_hash": "0x1f2e3d4c", "sshs_legacy_hash": "0x0",
}


def write_lora(path: Path, size: int = 400, metadata: dict[str, str] | None = None) -> dict[str, object]:
    """A LoHa-like file of mixed dtypes, over 1 MiB with size=400 (so the legacy window falls in the tensors)."""
    rng = np.random.default_rng(size)
    tensors = {"lora_unet_b.hada_w1_a": rng.standard_normal((size, 8)).astype(np.float16),
               "lora_unet_a.hada_w1_b": rng.standard_normal((8, size * 200)).astype(np.float16),
               "lora_te_c.weight": rng.standard_normal((size, 300)).astype(np.float32),
               "lora_unet_a.alpha": np.array(1.0, dtype=np.float16),
               "steps": np.arange(3, dtype=np.int64)}
    path.write_bytes(safetensors_numpy.save(tensors, METADATA if metadata is None else metadata))
    return tensors


def reference(path: Path) -> tuple[str, str]:
    """sd-scripts' definition: serialise the tensors with only the ss_* metadata through safetensors, then the
    SHA-256 after the header, and the first 8 hex digits of the SHA-256 of bytes 0x100000-0x10FFFF."""
    metadata = metadata_of(path)
    buffer = safetensors_numpy.save(safetensors_numpy.load_file(str(path)),
                                    {key: value for key, value in metadata.items() if key.startswith("ss_")})
    (length,) = struct.unpack("<Q", buffer[:8])
    return hashlib.sha256(buffer[8 + length:]).hexdigest(), hashlib.sha256(buffer[0x100000:0x110000]).hexdigest()[:8]


def metadata_of(path: Path) -> dict[str, str]:
    with path.open("rb") as handle:
        return hashes.read_layout(handle, path).metadata


def data_region(data: bytes) -> bytes:
    """The tensor bytes of a serialised file: everything after the 8-byte length and the header."""
    return data[8 + struct.unpack("<Q", data[:8])[0]:]


@pytest.mark.parametrize("size", [400, 20])  # over 1 MiB, and under it (the legacy window is then empty)
def test_hashes_equal_those_of_safetensors_own_serialisation(tmp_path: Path, size: int) -> None:
    file = tmp_path / "lora.safetensors"
    write_lora(file, size)
    assert hashes.compute(file) == reference(file)
    window_is_empty = hashes.compute(file)[1] == hashlib.sha256(b"").hexdigest()[:8]
    assert window_is_empty == (file.stat().st_size < 0x100000) == (size == 20)


def test_only_ss_metadata_counts(tmp_path: Path) -> None:
    one, two = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    write_lora(one)
    write_lora(two, metadata={**METADATA, "modelspec.title": "another title", "sshs_model_hash": "x"})
    assert hashes.compute(one) == hashes.compute(two)
    write_lora(two, metadata={**METADATA, "ss_network_dim": "16"})  # same length, other training metadata
    model_hash, legacy_hash = hashes.compute(two)
    assert model_hash == hashes.compute(one)[0]  # the tensors are the same...
    assert legacy_hash == hashes.compute(one)[1]  # ...and the header length too: the window sees the same bytes
    write_lora(two, metadata={**METADATA, "ss_network_dim": "128"})  # a longer header shifts the window
    assert hashes.compute(two)[1] != hashes.compute(one)[1]


def test_tensors_stored_out_of_safetensors_order_hash_as_sd_scripts_would(tmp_path: Path) -> None:
    """sd-scripts re-serialises, so the order is safetensors' (dtype, then name), not the file's."""
    ordered = tmp_path / "ordered.safetensors"
    tensors = write_lora(ordered)
    shuffled = tmp_path / "shuffled.safetensors"
    header: dict[str, object] = {"__metadata__": METADATA}
    blobs, offset = [], 0
    for name in sorted(tensors, reverse=True):
        blob = np.ascontiguousarray(tensors[name]).tobytes()
        dtype = {"float16": "F16", "float32": "F32", "int64": "I64"}[str(tensors[name].dtype)]
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    shuffled.write_bytes(hashes.serialise_header(header) + b"".join(blobs))
    assert data_region(shuffled.read_bytes()) != data_region(ordered.read_bytes())
    assert hashes.compute(shuffled) == hashes.compute(ordered) == reference(ordered)


def test_rehash_rewrites_the_header_only_atomically_and_once(tmp_path: Path) -> None:
    file = tmp_path / "e2e-stage1.safetensors"
    write_lora(file)
    file.chmod(0o644)
    before_bytes, before_tensors = file.read_bytes(), safetensors_numpy.load_file(str(file))
    expected = hashes.compute(file)

    done = hashes.rehash(file)
    assert done.rewritten and (done.model_hash, done.legacy_hash) == expected
    after_bytes = file.read_bytes()
    (length,) = struct.unpack("<Q", after_bytes[:8])
    assert length % 8 == 0 and length != struct.unpack("<Q", before_bytes[:8])[0]  # the header grew, padded
    assert data_region(after_bytes) == data_region(before_bytes)  # the tensors are the same bytes
    after = safetensors_numpy.load_file(str(file))
    assert after.keys() == before_tensors.keys()
    assert all(np.array_equal(after[key], before_tensors[key]) for key in after)
    metadata = metadata_of(file)
    assert (metadata["sshs_model_hash"], metadata["sshs_legacy_hash"]) == expected
    assert {key: value for key, value in metadata.items() if not key.startswith("sshs_")} == {
        key: value for key, value in METADATA.items() if not key.startswith("sshs_")}
    assert hashes.compute(file) == expected  # the sshs_* keys are not hashed: stable
    assert sorted(path.name for path in tmp_path.iterdir()) == [file.name]  # no temporary file left
    assert file.stat().st_mode & 0o777 == 0o644  # not the temporary file's 0600

    again = hashes.rehash(file)
    assert not again.rewritten and file.read_bytes() == after_bytes


def test_every_epoch_file_of_the_run_is_rehashed(tmp_path: Path) -> None:
    for name in ("cg-stage1.safetensors", "cg-stage1-000001.safetensors", "cg-stage1-000002.safetensors",
                 "cg-stage1-step00000010.safetensors", "cg-stage2.safetensors", "cg-stage1-old.safetensors"):
        write_lora(tmp_path / name, size=20)
    found = [path.name for path in hashes.epoch_files(tmp_path, "cg-stage1")]
    assert found == ["cg-stage1-000001.safetensors", "cg-stage1-000002.safetensors", "cg-stage1.safetensors"]
    lines = hashes.rehash_trained({"output_dir": str(tmp_path), "output_name": "cg-stage1"})
    assert [line.split(":")[0] for line in lines] == found
    for name in found:
        assert metadata_of(tmp_path / name)["sshs_model_hash"] == reference(tmp_path / name)[0]
    assert metadata_of(tmp_path / "cg-stage2.safetensors")["sshs_model_hash"] == "0x1f2e3d4c"  # another run's


def test_a_broken_file_is_named(tmp_path: Path) -> None:
    file = tmp_path / "broken.safetensors"
    file.write_bytes(b"\xff" * 16)
    with pytest.raises(OnetwoError, match=r"broken\.safetensors: not a readable \.safetensors file"):
        hashes.compute(file)
    lines = hashes.rehash_trained({"output_dir": str(tmp_path), "output_name": "broken"})
    assert len(lines) == 1 and lines[0].startswith("Warning: sshs_model_hash not set: ") and "broken" in lines[0]


@pytest.mark.sdscripts
@needs_sdscripts
def test_hashes_equal_sd_scripts_own_function(tmp_path: Path) -> None:
    from tests.kohya_hashes import kohya_hashes

    files = {tmp_path / "big.safetensors": tmp_path / "big-rehashed.safetensors",
             tmp_path / "small.safetensors": tmp_path / "small-rehashed.safetensors"}
    for (file, rehashed), size in zip(files.items(), (400, 20), strict=True):
        write_lora(file, size)
        rehashed.write_bytes(file.read_bytes())
        hashes.rehash(rehashed)
    theirs = kohya_hashes([*files, *files.values()], tmp_path)
    for file, rehashed in files.items():
        assert list(hashes.compute(file)) == theirs[str(file)]
        assert theirs[str(rehashed)] == theirs[str(file)]  # rewriting the header changes neither value
        assert [metadata_of(rehashed)[key] for key in ("sshs_model_hash", "sshs_legacy_hash")] == theirs[str(file)]
