"""issue 9.9: the base model is what the project says, read without torch, and `check` says when it is not."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

from onetwo.kohya.base_model import base_model_problems, classify
from tests.conftest import line_naming, missing_facts
from tests.model_files import (
    LOHA_KEYS,
    LOKR_KEYS,
    OTHER_KEYS,
    SD1_KEYS,
    SD2_KEYS,
    SDXL_KEYS,
    UNET,
    VAE_KEYS,
    write_diffusers,
    write_safetensors,
    write_torch_zip,
)
from tests.venvs import bare_venv

CROSS = f"{UNET}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"


@pytest.mark.parametrize(("keys", "kind"), [
    (SD1_KEYS, "sd1"), (SD2_KEYS, "sd2"), (SDXL_KEYS, "sdxl"), (LOHA_KEYS, "lora"), (LOKR_KEYS, "lora"),
    (VAE_KEYS, "vae"), (OTHER_KEYS, "not_a_model"), ([], "not_a_model"),
])
def test_safetensors_by_its_header_keys(tmp_path: Path, keys: list[str], kind: str) -> None:
    assert classify(write_safetensors(tmp_path / "model.safetensors", keys)).kind == kind


@pytest.mark.parametrize(("width", "kind"), [(768, "sd1"), (1024, "sd2"), (2048, "sdxl")])
def test_a_unet_alone_by_its_cross_attention_width(tmp_path: Path, width: int, kind: str) -> None:
    file = write_safetensors(tmp_path / "unet.safetensors", [CROSS], {CROSS: [320, width]})
    assert classify(file).kind == kind


def test_the_lora_kind_is_named(tmp_path: Path) -> None:
    assert "LoHa" in classify(write_safetensors(tmp_path / "a.safetensors", LOHA_KEYS)).detail
    assert "LoKr" in classify(write_safetensors(tmp_path / "b.safetensors", LOKR_KEYS)).detail


@pytest.mark.parametrize("cut", [1, 200, 10_000])
def test_a_cut_safetensors_is_truncated(tmp_path: Path, cut: int) -> None:
    """Cut in the tensor data (1 byte), in the header JSON, and inside the 8-byte length itself."""
    file = write_safetensors(tmp_path / "model.safetensors", SD1_KEYS)
    size = file.stat().st_size
    file.write_bytes(file.read_bytes()[:max(4, size - cut)])
    assert classify(file).kind == "truncated"


def test_ckpt_zip_keys_are_read_without_unpickling(tmp_path: Path) -> None:
    assert classify(write_torch_zip(tmp_path / "sd1.ckpt", SD1_KEYS)).kind == "sd1"
    assert classify(write_torch_zip(tmp_path / "xl.ckpt", SDXL_KEYS)).kind == "sdxl"
    assert classify(write_torch_zip(tmp_path / "lora.ckpt", LOHA_KEYS)).kind == "lora"
    # A pickle that would run code when loaded: its opcodes are only walked, so nothing runs.
    marker = tmp_path / "ran"

    class Boom:
        def __reduce__(self):
            return (Path.touch, (marker,))

    import zipfile

    with zipfile.ZipFile(tmp_path / "evil.ckpt", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({key: Boom() for key in SD1_KEYS}, protocol=2))
    assert classify(tmp_path / "evil.ckpt").kind == "sd1"
    assert not marker.exists()


def test_a_ckpt_without_its_end_record_is_truncated(tmp_path: Path) -> None:
    assert classify(write_torch_zip(tmp_path / "cut.ckpt", SD1_KEYS, cut=30)).kind == "truncated"


def test_a_legacy_pickle_cannot_be_checked(tmp_path: Path) -> None:
    (tmp_path / "old.ckpt").write_bytes(pickle.dumps({key: 0 for key in SD1_KEYS}, protocol=2))
    found = classify(tmp_path / "old.ckpt")
    assert found.kind == "unchecked" and "legacy" in found.detail


@pytest.mark.sdscripts
def test_a_real_torch_checkpoint(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed: the hand-built zip tests cover the format")
    torch.save({"state_dict": {key: torch.zeros(1) for key in SDXL_KEYS}}, tmp_path / "real.ckpt")
    assert classify(tmp_path / "real.ckpt").kind == "sdxl"


def test_diffusers_folders(tmp_path: Path) -> None:
    assert classify(write_diffusers(tmp_path / "sd1", "StableDiffusionPipeline", 768)).kind == "sd1"
    assert classify(write_diffusers(tmp_path / "sd2", "StableDiffusionPipeline", 1024)).kind == "sd2"
    assert classify(write_diffusers(tmp_path / "xl", "StableDiffusionXLPipeline", 2048)).kind == "sdxl"
    (tmp_path / "empty").mkdir()
    assert classify(tmp_path / "empty").kind == "not_a_model"


def test_not_a_model_at_all(tmp_path: Path) -> None:
    (tmp_path / "notes.safetensors").write_text("this is a text file, not a model\n", encoding="utf-8")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    assert classify(tmp_path / "notes.safetensors").kind == "not_a_model"
    assert classify(tmp_path / "empty.ckpt").kind == "truncated"


def test_sd2_needs_v2_and_sd1_refuses_it(tmp_path: Path) -> None:
    sd2 = write_safetensors(tmp_path / "sd2.safetensors", SD2_KEYS)
    sd1 = write_safetensors(tmp_path / "sd1.safetensors", SD1_KEYS)
    assert "set v2 = true" in base_model_problems(sd2, "sd1", {})[0][0]
    assert base_model_problems(sd2, "sd1", {"v2": True}) == ([], [f"base model: {classify(sd2).detail}"])
    assert "v2 = true" in base_model_problems(sd1, "sd1", {"v2": True})[0][0]


# --- through `onetwo check` -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python with nothing installed as the trainer's: its probe answers at once (torch missing), so these tests
    look at the base model without waiting for a real torch import."""
    return bare_venv(tmp_path_factory.mktemp("bare") / "venv")


MakeProject = Callable[..., Path]


def check_with(make_project: MakeProject, cli, quick_python: Path, model: str = "sd1") -> tuple[int, str]:
    make_project(project={"base_model": "model", "python": str(quick_python), "model": model})
    code, _, err = cli("check")
    return code, err


@pytest.mark.parametrize(("build", "model", "expected"), [
    (lambda path: write_safetensors(path, LOHA_KEYS), "sd1",
     "project.base_model is a LoRA (a LoHa network"),
    (lambda path: write_safetensors(path, SDXL_KEYS), "sd1",
     "project.base_model is an SDXL checkpoint (conditioner.embedders.* text encoder keys), but project.model is "
     "'sd1'; set project.model = 'sdxl'"),
    (lambda path: write_torch_zip(path, SD1_KEYS), "sdxl",
     "but project.model is 'sdxl'; set project.model = 'sd1'"),
    (lambda path: write_safetensors(path, SD1_KEYS, cut=1), "sd1",
     "project.base_model is truncated (its tensors end at byte"),
    (lambda path: write_torch_zip(path, SD1_KEYS, cut=30), "sd1", "is truncated (a zip without its end record"),
    (lambda path: write_safetensors(path, VAE_KEYS), "sd1",
     "project.base_model is not a model sd-scripts can train on (a VAE alone)"),
    (lambda path: write_diffusers(path, "StableDiffusionXLPipeline", 2048), "sd1",
     "is an SDXL diffusers StableDiffusionXLPipeline, but project.model is 'sd1'"),
])
def test_check_reports_the_base_model(make_project: MakeProject, cli, quick_python: Path, tmp_path: Path,
                                      build, model: str, expected: str) -> None:
    build(tmp_path / "model")
    code, err = check_with(make_project, cli, quick_python, model)
    assert code == 2
    line = next(line for line in err.splitlines() if "project.base_model" in line)
    assert line.startswith(f"  - {tmp_path / 'model'}: ") and expected in line


def test_check_says_what_a_good_base_model_is(make_project: MakeProject, cli, quick_python: Path,
                                              tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model", SD1_KEYS)
    _, err = check_with(make_project, cli, quick_python)
    found = line_naming(err, "base model: ")
    assert not missing_facts(found, "SD1", "cond_stage_model.transformer."), found
    assert "project.base_model" not in err
