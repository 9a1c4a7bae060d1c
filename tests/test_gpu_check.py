"""`make gpu-check` (scripts/gpu_check.py) where it can be tested without a GPU: it refuses to run without CUDA and
says why, the project it trains renders the reference settings, and its probe records optimizer steps."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "gpu_check.py"
PROBE = REPO / "scripts" / "gpu_probe"
HAS_TORCH = importlib.util.find_spec("torch") is not None


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def cuda_available() -> bool:
    if not HAS_TORCH:
        return False
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True, timeout=300)
    return probe.stdout.strip() == "True"


def test_without_cuda_it_exits_2_and_says_why(tmp_path: Path) -> None:
    if cuda_available():
        pytest.skip("a CUDA GPU is present here: `make gpu-check` would train for real")
    work = tmp_path / "gpu-check"
    done = subprocess.run([sys.executable, str(SCRIPT), "--work", str(work)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    expected = "no CUDA GPU is available to torch" if HAS_TORCH else "torch is not installed"
    assert done.stderr.startswith(f"gpu-check: {expected}"), done.stderr
    assert "Traceback" not in done.stderr
    assert not work.exists()  # refused before writing anything


def test_seconds_per_step_is_the_median_gap_between_step_ends() -> None:
    step_seconds = load_script().step_seconds
    # the first end closes the warm-up step, which has no measurable start; one slow step does not move the median
    assert step_seconds([10.0, 11.0, 12.5, 13.5, 20.0]) == 1.25
    assert step_seconds([10.0]) is None
    assert step_seconds([]) is None


def test_the_checked_project_trains_with_the_reference_settings(tmp_path: Path) -> None:
    """What the GPU run trains with, rendered by the real CLI: the templates' GPU values, one epoch, no samples."""
    from onetwo.cli import main

    gpu_check = load_script()
    model = tmp_path / "model"
    model.mkdir()
    project_file = gpu_check.write_project(tmp_path, model, tmp_path / "tokenizers")
    for stage in ("stage1", "stage2"):
        assert main(["--project", str(project_file), "render", stage, "--no-progress"]) == 0
    rendered = {stage: {name: tomllib.loads((tmp_path / "build" / stage / f"{name}.toml").read_text("utf-8"))
                        for name in ("config", "dataset")} for stage in ("stage1", "stage2")}
    for stage, files in rendered.items():
        flat = {key: value for section in files["config"].values() for key, value in section.items()}
        assert (flat["mixed_precision"], flat["optimizer_type"], flat["max_train_epochs"]) == ("fp16", "AdamW8bit", 1)
        assert flat["xformers"] is (gpu_check.attention_settings() == {})
        assert flat["sample_every_n_epochs"] > flat["max_train_epochs"]  # no sample images
        (dataset,) = files["dataset"]["datasets"]
        assert (dataset["resolution"], dataset["batch_size"]) == ((640, 4) if stage == "stage1" else (768, 2))
    assert rendered["stage2"]["config"]["training_arguments"]["seed"] == 2


@pytest.mark.sdscripts
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not importable: run `make setup`")
def test_probe_records_every_optimizer_step_of_a_training_script_only(tmp_path: Path) -> None:
    program = ("import torch\n"
               "weight = torch.nn.Parameter(torch.ones(3))\n"
               "optimizer = torch.optim.SGD([weight], lr=0.1)\n"
               "for _ in range(3):\n"
               "    weight.sum().backward()\n"
               "    optimizer.step()\n")
    env = {**os.environ, "PYTHONPATH": str(PROBE), "ONETWO_GPU_PROBE_DIR": str(tmp_path / "probe")}
    for name in ("sdxl_train_network.py", "other.py"):
        (tmp_path / name).write_text(program, encoding="utf-8")
        subprocess.run([sys.executable, str(tmp_path / name)], env=env, check=True, timeout=300)
    (record_file,) = (tmp_path / "probe").glob("*.json")
    record = json.loads(record_file.read_text(encoding="utf-8"))
    assert record["script"] == "sdxl_train_network.py"
    assert len(record["step_ends"]) == 3 and record["step_ends"] == sorted(record["step_ends"])
    assert record["peak_allocated_bytes"] is None  # this process never touched CUDA


def test_the_anima_check_trains_with_the_anima_templates_gpu_settings(tmp_path: Path) -> None:
    """Anima's run, rendered by the real CLI: templates/anima/'s bf16, AdamW8bit, gradient checkpointing and
    caching, its resolutions and batches, one epoch, no samples."""
    from onetwo.cli import main
    from tests.model_files import write_anima_files

    gpu_check = load_script()
    files = write_anima_files(tmp_path / "models")
    project_file = gpu_check.write_anima_project(tmp_path / "anima", files["base_model"], files["text_encoder"],
                                                 files["vae"])
    for stage in ("stage1", "stage2"):
        assert main(["--project", str(project_file), "render", stage, "--no-progress"]) == 0
    template = tomllib.loads((REPO / "templates" / "anima" / "train.toml").read_text("utf-8"))
    for stage, reference in (("stage1", (768, 2)), ("stage2", (1024, 1))):
        folder = tmp_path / "anima" / "build" / stage
        config = tomllib.loads((folder / "config.toml").read_text("utf-8"))
        flat = {key: value for section in config.values() for key, value in section.items()}
        assert (flat["mixed_precision"], flat["optimizer_type"], flat["network_module"]) == (
            "bf16", "AdamW8bit", "networks.lora_anima")
        assert flat["max_train_epochs"] == 1 and flat["sample_every_n_epochs"] > 1  # one epoch, no samples
        for key in ("gradient_checkpointing", "cache_latents", "cache_text_encoder_outputs", "learning_rate",
                    "timestep_sampling", "discrete_flow_shift", "network_dim", "network_alpha", "save_precision"):
            section = next(name for name, values in template.items() if key in values)
            assert flat[key] == template[section][key], key
        assert (flat["qwen3"], flat["vae"]) == (str(files["text_encoder"]), str(files["vae"]))
        (dataset,) = tomllib.loads((folder / "dataset.toml").read_text("utf-8"))["datasets"]
        assert (dataset["resolution"], dataset["batch_size"]) == reference


def test_without_cuda_the_anima_check_refuses_too(tmp_path: Path) -> None:
    if cuda_available():
        pytest.skip("a CUDA GPU is present here: `make gpu-check` would train for real")
    done = subprocess.run([sys.executable, str(SCRIPT), "--work", str(tmp_path / "w"), "--family", "anima"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.startswith("gpu-check: ") and "Traceback" not in done.stderr
    assert not (tmp_path / "w").exists()


def test_a_trained_files_metadata_is_checked_against_the_templates_settings() -> None:
    problems = load_script().metadata_problems
    meta = {"ss_network_module": "networks.lora_anima", "ss_network_dim": "8",
            "ss_optimizer": "bitsandbytes.optim.adamw.AdamW8bit"}
    assert problems("stage1", meta, {"ss_network_module": "networks.lora_anima", "ss_network_dim": "8"}) == []
    found = problems("stage2", {**meta, "ss_optimizer": "torch.optim.adamw.AdamW"}, {"ss_network_dim": "16"})
    assert found == ["stage2: metadata ss_network_dim is '8', expected '16'",
                     "stage2: ss_optimizer is 'torch.optim.adamw.AdamW', expected AdamW8bit"]
