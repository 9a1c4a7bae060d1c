"""issue 14: `onetwo train` and `onetwo matrix` fit a stage to the trainer's Python through one path (the probe, sdpa
where xformers cannot run, the base-model check); without torch the probe cannot answer, so the template's xformers
stays, and every missing piece is named at once. The trainer Pythons here are real venvs whose packages are small
stand-ins (a torch that reports a CUDA GPU, an accelerate that imports it), so no torch or sd-scripts is needed."""

from __future__ import annotations

import json
import shlex
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from onetwo import stages
from onetwo.kohya import render
from onetwo.kohya.render import read_toml
from onetwo.trainer.needs import LaunchPython, Probe, problems_for
from tests.model_files import SD1_KEYS, write_safetensors
from tests.venvs import bare_venv

MakeProject = Callable[..., Path]
GPU_TORCH = """__version__ = "2.5.0"
class cuda:
    is_available = staticmethod(lambda: True)
    device_count = staticmethod(lambda: 1)
    get_device_name = staticmethod(lambda index: "Stand-in GPU")
class backends:
    mps = None
"""
NEEDS_TORCH = "import torch\n"
# The shipped templates ask for lycoris.kohya, AdamW8bit (bitsandbytes) and xformers: all here but xformers.
GPU_WITHOUT_XFORMERS = {"torch/__init__.py": GPU_TORCH, "accelerate/__init__.py": NEEDS_TORCH,
                        "lycoris/__init__.py": NEEDS_TORCH, "lycoris/kohya.py": NEEDS_TORCH,
                        "bitsandbytes/__init__.py": NEEDS_TORCH}
SHIPPED_NETWORK = {"ss_network_module": "lycoris.kohya", "ss_network_dim": "8", "ss_network_alpha": "1",
                   "ss_network_args": json.dumps({"conv_dim": "0", "conv_alpha": "16", "algo": "loha"})}


def venv_with(folder: Path, files: dict[str, str]) -> Path:
    """A bare venv whose site-packages holds exactly these module files."""
    python = bare_venv(folder)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    for name, text in files.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text, encoding="utf-8")
    return python


@pytest.fixture(scope="module")
def gpu_without_xformers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return venv_with(tmp_path_factory.mktemp("gpu") / "venv", GPU_WITHOUT_XFORMERS)


@pytest.fixture(scope="module")
def without_torch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv: no torch, accelerate, lycoris-lora or bitsandbytes."""
    return bare_venv(tmp_path_factory.mktemp("bare") / "venv")


@pytest.fixture(autouse=True)
def own_probe_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def shipped_project(make_project: MakeProject, tmp_path: Path, python: Path) -> Path:
    """The shipped templates (xformers = true, fp16, AdamW8bit) with a stand-in sd-scripts checkout."""
    checkout = tmp_path / "sd-scripts"
    checkout.mkdir()
    (checkout / "train_network.py").write_text("raise SystemExit('not run in these tests')\n")
    write_safetensors(tmp_path / "model.safetensors", SD1_KEYS)
    return make_project(project={"python": str(python), "sd_scripts": str(checkout)})


def write_lora(path: Path, metadata: dict[str, str]) -> Path:
    header = json.dumps({"__metadata__": metadata}).encode("utf-8")
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


def attention(config_file: Path) -> tuple[bool, bool]:
    flat = render.flatten_sections(read_toml(config_file))
    return flat.get("xformers", False), flat.get("sdpa", False)


def test_matrix_samples_with_sdpa_where_train_would(make_project: MakeProject, cli, gpu_without_xformers: Path,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case: the shipped xformers = true on a GPU machine without xformers. What matrix launches (its
    argv and its config) trains with sdpa, from the trainer's Python, as `train` does."""
    shipped_project(make_project, tmp_path, gpu_without_xformers)
    lora = write_lora(tmp_path / "pair.safetensors", SHIPPED_NETWORK)
    launched: list[list[str]] = []
    monkeypatch.setattr("onetwo.sample.run.run", lambda argv, log: launched.append(list(argv)) or 1)
    code, _, err = cli("matrix", str(lora), "--no-progress")
    assert code == 2 and "sampling exited with 1" in err  # the stand-in trainer draws nothing
    assert len(launched) == 1 and launched[0][0] == str(gpu_without_xformers)
    job = json.loads(Path(launched[0][-1]).read_text(encoding="utf-8"))
    assert attention(Path(job["config_file"])) == (False, True)  # what the worker loads the base model with
    assert f"xformers = true, but {gpu_without_xformers} cannot import xformers" in err
    assert "training with sdpa = true instead" in err

    code, out, err = cli("train", "stage1", "--dry-run", "--no-progress")
    assert code == 0, err
    assert "Warning" not in err  # nothing else is missing: the stand-in GPU runs fp16 and AdamW8bit
    assert shlex.split(out)[0] == str(gpu_without_xformers)
    assert attention(tmp_path / "work" / "stage1" / "config.toml") == (False, True)


def test_matrix_dry_run_prints_what_it_would_launch_and_its_problems(make_project: MakeProject, cli,
                                                                     without_torch: Path, tmp_path: Path) -> None:
    shipped_project(make_project, tmp_path, without_torch)
    (tmp_path / "model.safetensors").write_bytes(b"not a model")
    lora = write_lora(tmp_path / "pair.safetensors", SHIPPED_NETWORK)
    code, out, err = cli("matrix", str(lora), "--dry-run", "--no-progress")
    assert code == 0, err
    argv = shlex.split(out)
    assert argv[0] == str(without_torch) and argv[-1] == str(tmp_path / "work" / "matrix" / "pair" / "job.json")
    warnings = [line for line in err.splitlines() if line.startswith("Warning: ")]
    assert any("torch cannot be imported" in line for line in warnings)
    assert any(f"{tmp_path / 'model.safetensors'}: " in line for line in warnings)  # the base-model check
    assert not (tmp_path / "work" / "matrix" / "pair" / "sample.log").exists()


def test_without_torch_the_templates_xformers_stays_and_every_missing_piece_is_named(
        make_project: MakeProject, cli, without_torch: Path, tmp_path: Path) -> None:
    shipped_project(make_project, tmp_path, without_torch)
    code, _, err = cli("train", "stage1", "--dry-run", "--no-progress")
    assert code == 0, err
    assert "sdpa" not in err
    assert attention(tmp_path / "work" / "stage1" / "config.toml") == (True, False)
    gui = json.loads((tmp_path / "work" / "stage1" / "kohya_ss.json").read_text(encoding="utf-8"))
    assert gui["xformers"] == "xformers"

    code, _, err = cli("check", "--no-progress")
    assert code == 2
    problems = [line for line in err.splitlines() if line.startswith("  - ")]
    for package in ("torch torchvision", "accelerate", "lycoris-lora", "bitsandbytes"):
        assert sum(f"`{without_torch} -m pip install {package}`" in line for line in problems) == 1, (package, err)
    assert len(problems) == 4, err


def test_packages_that_only_wait_for_torch_are_not_named_twice() -> None:
    python = "/k/venv/bin/python"
    waits = {"error": "ModuleNotFoundError: No module named 'torch'", "missing": "torch"}
    broken = {"error": "OSError: libcudart.so.12: cannot open shared object file", "missing": None}
    probe = Probe({"torch": None, "torch_error": broken, "modules": {
        "accelerate": waits, "lycoris.kohya": broken,
        "bitsandbytes": {"error": "ModuleNotFoundError: No module named 'bitsandbytes'", "missing": "bitsandbytes"},
        "xformers.ops": {"error": "ModuleNotFoundError: No module named 'xformers'", "missing": "xformers"}}})
    flat = {"network_module": "lycoris.kohya", "optimizer_type": "AdamW8bit", "xformers": True,
            "mixed_precision": "fp16"}
    launch = LaunchPython(python, "project.python")
    problems = problems_for(probe, launch, flat, {}, Path("/nowhere"), True)
    assert [problem.split("`")[1] for problem in problems] == [f"{python} -m pip install torch torchvision",
                                                               f"{python} -m pip install bitsandbytes"]
    # Refusing the sdpa fallback makes an xformers that is not installed one more missing piece.
    refused = problems_for(probe, launch, flat, {}, Path("/nowhere"), False)
    assert refused[2:] == [problem for problem in refused if f"`{python} -m pip install xformers`" in problem]
    assert len(refused) == 3


def test_a_stage_reads_its_templates_and_accelerate_settings_once(make_project: MakeProject, cli, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    make_project(accelerate={"cpu": True})
    reads: list[str] = []
    settings: list[tuple[str, ...]] = []
    read, accelerate = render.read_toml, stages.accelerate_settings
    monkeypatch.setattr(render, "read_toml", lambda path: reads.append(path.name) or read(path))
    monkeypatch.setattr(stages, "accelerate_settings",
                        lambda project, items: settings.append(tuple(items)) or accelerate(project, items))
    for stage, template in (("stage1", "dataset-stage1.toml"), ("stage2", "dataset-stage2.toml")):
        reads.clear()
        settings.clear()
        code, _, err = cli("render", stage, "--no-progress", "--accelerate", "num_processes=1")
        assert code == 0, err
        assert sorted(reads) == [template, "train.toml"], stage
        assert settings == [("num_processes=1",)], stage
    reads.clear()
    settings.clear()
    cli("check", "--no-progress")
    assert sorted(reads) == ["dataset-stage1.toml", "dataset-stage2.toml", "train.toml", "train.toml"]
    assert settings == [()]
