"""issue 17 §3: a v-prediction SDXL checkpoint, recognised by the marker tensors ComfyUI reads, trains with
v_parameterization (and zero_terminal_snr where marked) unless the project says otherwise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from onetwo.data.scan import scan_project
from onetwo.kohya.base_model import classify, model_settings
from onetwo.kohya.render import load_templates, parse_set, render_stage
from onetwo.project.file import load_project
from tests.model_files import SD1_KEYS, SDXL_KEYS, write_safetensors, write_torch_zip
from tests.venvs import bare_venv

BOTH = {"v_parameterization": True, "zero_terminal_snr": True}


@pytest.mark.parametrize(("extra", "expected"), [
    (["v_pred", "ztsnr"], BOTH),
    (["v_pred"], {"v_parameterization": True}),
    (["ztsnr"], {}),  # ComfyUI reads ztsnr only beside v_pred
    ([], {}),
])
def test_the_markers_of_an_sdxl_header(tmp_path: Path, extra: list[str], expected: dict) -> None:
    model = write_safetensors(tmp_path / "model.safetensors", SDXL_KEYS + extra)
    assert classify(model).kind == "sdxl"
    assert classify(model).markers == tuple(extra)
    assert model_settings(model, "sdxl")[0] == expected


def test_markers_are_read_from_a_ckpt_too_and_only_for_sdxl(tmp_path: Path) -> None:
    ckpt = write_torch_zip(tmp_path / "model.ckpt", [*SDXL_KEYS, "v_pred", "ztsnr"])
    assert model_settings(ckpt, "sdxl")[0] == BOTH
    sd1 = write_safetensors(tmp_path / "sd1.safetensors", [*SD1_KEYS, "v_pred"])
    assert model_settings(sd1, "sd1") == ({}, "")
    assert model_settings(tmp_path / "missing.safetensors", "sdxl") == ({}, "")


def render(make_project: Callable[..., Path], tmp_path: Path, extra: list[str], stage: str = "stage1",
           sets: tuple[str, ...] = (), **sections: dict):
    write_safetensors(tmp_path / "model.safetensors", SDXL_KEYS + extra)
    project = load_project(make_project(project={"model": "sdxl"}, **sections))
    return render_stage(project, stage, scan_project(project), load_templates(project, stage), parse_set(sets),
                        project.lora_file("stage1") if stage == "stage2" else None)


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_a_vpred_model_gets_both_settings_with_a_notice(make_project, tmp_path: Path, stage: str) -> None:
    rendered = render(make_project, tmp_path, ["v_pred", "ztsnr"], stage)
    flat = rendered.flat_config()
    assert flat["v_parameterization"] is True and flat["zero_terminal_snr"] is True
    assert len(rendered.notices) == 2 and "'v_pred' and 'ztsnr'" in rendered.notices[0]
    assert rendered.warnings == ()


def test_an_epsilon_model_is_left_alone(make_project, tmp_path: Path) -> None:
    rendered = render(make_project, tmp_path, [])
    assert "v_parameterization" not in rendered.flat_config() and rendered.notices == ()


def test_the_project_setting_wins_and_false_is_warned(make_project, tmp_path: Path) -> None:
    rendered = render(make_project, tmp_path, ["v_pred", "ztsnr"],
                      training={"v_parameterization": False, "zero_terminal_snr": False})
    flat = rendered.flat_config()
    assert flat["v_parameterization"] is False and flat["zero_terminal_snr"] is False
    assert rendered.notices == ()
    assert [message.split(":")[1].strip() for message in rendered.warnings] == [
        "v_parameterization = false, but the base model is marked 'v_pred' and 'ztsnr'",
        "zero_terminal_snr = false, but the base model is marked 'v_pred' and 'ztsnr'"]


def test_a_set_true_is_quiet(make_project, tmp_path: Path) -> None:
    rendered = render(make_project, tmp_path, ["v_pred"], sets=("v_parameterization=true",))
    assert rendered.flat_config()["v_parameterization"] is True
    assert rendered.notices == () and rendered.warnings == ()


def test_check_prints_the_notice_and_the_marker(make_project, cli, tmp_path: Path) -> None:
    python = bare_venv(tmp_path / "venv")
    write_safetensors(tmp_path / "model.safetensors", [*SDXL_KEYS, "v_pred", "ztsnr"])
    make_project(project={"model": "sdxl", "python": str(python)}, training={"zero_terminal_snr": False})
    _, _, err = cli("check")
    assert "stage1: v_parameterization = true: the base model is marked 'v_pred' and 'ztsnr'" in err
    assert "Warning: stage1: " in err and "zero_terminal_snr = false" in err
    assert "base model: an SDXL checkpoint (conditioner.embedders.* text encoder keys), marked 'v_pred' and " \
           "'ztsnr'" in err
