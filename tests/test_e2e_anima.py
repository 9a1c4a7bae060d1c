"""Anima end to end on the CPU (issue 17): a seeded, randomly initialised Anima set (the full-size DiT, a one-layer
Qwen3 and the Qwen-Image VAE: tests/tiny_anima.py), two characters, and `onetwo check`, `onetwo composite`,
`onetwo train stage1`, `onetwo train stage2` and `onetwo sample stage1` with `project.model = "anima"`, run as a
user runs them (anima_train_network.py, the Anima templates, every CPU setting in the project file); then the test
reads what sd-scripts wrote.

Time and memory are in docs/anima.md. The set is built once into $ONETWO_TEST_ANIMA_DIR (default .cache/tiny-anima,
git-ignored, 4.5 GB) and reused by later runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.sdscripts import (
    ACCELERATE_CPU,
    REPO,
    SD_SCRIPTS,
    TINY_DATASET,
    TRAINING_CPU,
    Step,
    child_env,
    need,
    needs_sdscripts,
    report_resources,
    run_onetwo,
    tail,
    write_project,
)

pytestmark = [pytest.mark.slow, pytest.mark.sdscripts, needs_sdscripts]

STAGES = ("stage1", "stage2")
NAMES = ("aoi", "beni")
PAIRS = [(left, right) for left in NAMES for right in NAMES if left != right]
DIM = 8
# 4 images (stage 1) or 2 composites (stage 2), each stage's images in one 64x64 bucket: one step a stage.
ANIMA_DATASET = {**TINY_DATASET, "batch_size": 4}
IMAGES = {"stage1": 4, "stage2": 2}
LORA_KEYS = ("alpha", "lora_down.weight", "lora_up.weight")


@dataclass(frozen=True)
class Trained:
    root: Path
    project: Any  # onetwo.project.config.Project
    steps: dict[str, Step]


@pytest.fixture(scope="session")
def tiny_anima() -> Any:
    from tests.tiny_anima import build_tiny_anima

    dest = Path(os.environ.get("ONETWO_TEST_ANIMA_DIR") or REPO / ".cache" / "tiny-anima")
    return build_tiny_anima(dest, SD_SCRIPTS)


def anima_cpu_project(root: Path, tiny: Any) -> Path:
    """The CPU settings through the project file; the rest is templates/anima/ (gradient checkpointing, latents and
    text encoder outputs cached, DiT only), with mixed_precision "no" since bf16 needs CUDA (check says so)."""
    return write_project(root, {
        "project": {"model": "anima", "base_model": str(tiny.dit), "text_encoder": str(tiny.text_encoder),
                    "vae": str(tiny.vae)},
        "composite": {"width": 128, "height": 128},  # two 64x128 halves; at resolution 64 the bucket is 64x64
        "samples": {"steps": 1},
        "accelerate": ACCELERATE_CPU,
        "training": TRAINING_CPU,
        "stage1": {"sample_every_n_epochs": 1, "dataset": ANIMA_DATASET},
        "stage2": {"seed": 2, "sample_every_n_epochs": 1, "dataset": ANIMA_DATASET},
    }, folders={name: name for name in NAMES})


@pytest.fixture(scope="module")
def trained(tiny_anima: Any, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Trained:
    from onetwo.project.file import load_project

    root = tmp_path_factory.mktemp("e2e-anima")
    project_file = anima_cpu_project(root, tiny_anima)
    steps: dict[str, Step] = {}
    for name, argv in (("check", ["check"]), ("composite", ["composite"]), ("stage1", ["train", "stage1"]),
                       ("stage2", ["train", "stage2"])):
        steps[name] = run_onetwo(root, project_file, *argv)
        if steps[name].returncode != 0:
            break
    report_resources(request, root, steps, "e2e anima")
    return Trained(root, load_project(project_file), steps)


@pytest.fixture(scope="module")
def expected_modules(trained: Trained) -> dict[str, list[list[int]]]:
    """LoRA name → [lora_down shape, lora_up shape], from sd-scripts' Anima model and lora_anima's selection rules."""
    result = trained.root / "expected-modules.json"
    done = subprocess.run([sys.executable, str(REPO / "tests" / "anima_lora_modules.py"), str(SD_SCRIPTS), str(DIM),
                           str(result)], env=child_env(), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"deriving the module list failed:\n{tail(done.stdout + done.stderr)}")
    return json.loads(result.read_text(encoding="utf-8"))["modules"]


def tensors(trained: Trained, stage: str) -> tuple[dict[str, Any], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(trained.project.lora_file(stage)), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}, handle.metadata()  # noqa: SIM118


def test_check_accepts_the_cpu_project_and_tells_the_files_apart(trained: Trained) -> None:
    need(trained, "check")
    output = trained.steps["check"].output
    assert "base model: an Anima DiT (28 blocks with ComfyUI's net. prefix, LLM adapter inside)" in output
    assert "text_encoder: a Qwen3 model folder" in output and "vae: a Qwen-Image VAE" in output
    assert "check: no problems found" in output


def test_every_command_succeeds_and_trains_with_anima_train_network(trained: Trained) -> None:
    need(trained, "composite", "stage1", "stage2")
    for stage in STAGES:
        assert f"{stage}: done → {trained.project.lora_file(stage)}" in trained.steps[stage].output
        log = (trained.project.stage_dir(stage) / "train.log").read_text(encoding="utf-8")
        assert "anima_train_network.py" in trained.steps[stage].output + log


@pytest.mark.parametrize("stage", STAGES)
def test_lora_has_exactly_the_derived_anima_modules_and_shapes(trained: Trained, stage: str,
                                                               expected_modules: dict[str, list[list[int]]]) -> None:
    import torch

    need(trained, stage)
    found, _ = tensors(trained, stage)
    expected = {}
    for name, (down, up) in expected_modules.items():
        expected |= {f"{name}.alpha": (), f"{name}.lora_down.weight": tuple(down), f"{name}.lora_up.weight": tuple(up)}
    actual = {key: tuple(tensor.shape) for key, tensor in found.items()}
    assert sorted(set(actual) - set(expected)) == [] and sorted(set(expected) - set(actual)) == []
    assert actual == expected and len(expected_modules) == 280
    assert {tensor.dtype for tensor in found.values()} == {torch.bfloat16}  # the template's save_precision
    assert {float(tensor) for key, tensor in found.items() if key.endswith(".alpha")} == {1.0}


@pytest.mark.parametrize("stage", STAGES)
def test_metadata_says_anima_and_names_the_stage(trained: Trained, stage: str) -> None:
    need(trained, stage)
    _, meta = tensors(trained, stage)
    assert meta["ss_base_model_version"] == "anima" and meta["modelspec.architecture"] == "anima-preview/lora"
    assert (meta["ss_network_module"], meta["ss_network_dim"], meta["ss_network_alpha"]) == (
        "networks.lora_anima", "8", "1")
    assert meta["ss_timestep_sampling"] == "sigmoid" and meta["ss_discrete_flow_shift"] == "1.0"
    assert meta["ss_output_name"] == f"e2e-{stage}" and meta["ss_steps"] == "1" and meta["ss_epoch"] == "1"
    (dataset,) = json.loads(meta["ss_datasets"])
    assert dataset["resolution"] == [64, 64] and dataset["num_train_images"] == IMAGES[stage]
    # Anima's trainer builds its modelspec without the metadata_* keys (train_util.get_sai_model_spec_dataclass), so
    # onetwo's modelspec.onetwo record is dropped; the same record reaches the file as ss_training_comment.
    assert "modelspec.onetwo" not in meta
    assert f"; stage {stage}; project e2e;" in meta["ss_training_comment"]
    if stage == "stage2":
        frequency = json.loads(meta["ss_tag_frequency"])[trained.project.composite_dir.name]
        assert {tag for tag in frequency if tag.endswith("/composite")} == {
            f"{left}/{right}/composite" for left, right in PAIRS}


def test_stage2_continued_from_stage1(trained: Trained) -> None:
    need(trained, "stage1", "stage2")
    first = trained.project.lora_file("stage1")
    # Whitespace is removed before matching: kohya's logger wraps long lines.
    log = re.sub(r"\s+", "", (trained.project.stage_dir("stage2") / "train.log").read_text(encoding="utf-8"))
    assert re.sub(r"\s+", "", f"load network weights from {first}: <All keys matched successfully>") in log

    one, _ = tensors(trained, "stage1")
    two, meta = tensors(trained, "stage2")
    assert one.keys() == two.keys()
    down = [key for key in one if key.endswith("lora_down.weight")]
    moved = max(float((two[key].float() - one[key].float()).abs().max()) for key in down)
    assert 0 < moved <= 1e-3  # one AdamW step at 1e-4, from stage 1's weights
    spread = min(float(one[key].float().abs().max()) for key in down)
    assert spread > 5e-3  # a fresh start (lora_down random, bound 1/sqrt(fan_in) >= 0.011) would differ by that much
    assert f"source_sha256 {hashlib.sha256(first.read_bytes()).hexdigest()}" in meta["ss_training_comment"]


def test_stage2_drew_every_sample_prompt(trained: Trained) -> None:
    from PIL import Image

    need(trained, "stage2")
    prompts = (trained.project.stage_dir("stage2") / "sample_prompts.txt").read_text(encoding="utf-8").splitlines()
    assert len(prompts) == len(NAMES) + len(PAIRS)
    samples = sorted((trained.project.output_dir / "sample").glob("e2e-stage2_e000001_*.png"))
    assert [path.name.split("_")[2] for path in samples] == [f"{index:02d}" for index in range(len(prompts))]
    for path in samples:
        with Image.open(path) as image:
            assert image.size == (64, 64) and any(low < high for low, high in image.getextrema())  # not blank


def test_sample_draws_what_stage1s_training_drew(trained: Trained) -> None:
    """`onetwo sample` on Anima: the worker loads the DiT as the trainer does, merges stage 1's LoRA as the UIs merge
    it, and draws with sd-scripts' own Anima sampling function; for the same file, prompt, seed and settings that
    gives the images stage 1's training drew (the LoRA applied by its forward hooks), within a pixel level."""
    import numpy as np
    from PIL import Image

    need(trained, "stage1")
    project = trained.project
    step = run_onetwo(project.file.parent, project.file, "sample", "stage1", "--seeds", "1")
    assert step.returncode == 0, tail(step.output, 80)
    (trained.root / "e2e-sample.json").write_text(json.dumps({"wall_s": step.wall_s,
                                                              "peak_rss_gib": step.peak_rss_gib}), encoding="utf-8")
    assert "merged 280 modules at strength 1" in step.output
    out_dir = project.samples_dir("stage1")
    differences = {}
    for index in range(len(NAMES) + len(PAIRS)):
        (trained_png,) = (project.output_dir / "sample").glob(f"e2e-stage1_e000001_{index:02d}_*_1.png")
        with Image.open(trained_png) as a, Image.open(out_dir / f"e2e-stage1__p{index:02d}__s1.png") as b:
            theirs, ours = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
        assert theirs.shape == ours.shape == (64, 64, 3) and ours.std() > 0, index
        differences[index] = round(float(np.abs(theirs - ours).mean()), 4)
        assert (out_dir / f"e2e-stage1__p{index:02d}__s1.json").is_file()
    assert max(differences.values()) <= 1.0, f"mean differences {differences}"
    rerun = run_onetwo(project.file.parent, project.file, "sample", "stage1", "--seeds", "1")
    assert rerun.returncode == 0 and "merged" not in rerun.output  # everything drawn already: nothing loads
