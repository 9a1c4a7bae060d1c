"""SDXL end to end on the CPU: a seeded, randomly initialised SDXL model (full-size UNet, tiny_sdxl), three
characters, and `onetwo composite`, `onetwo train stage1`, `onetwo train stage2` with `project.model = "sdxl"`, run
as a user runs them (sdxl_train_network.py, the SDXL templates, every CPU setting in the project file); then the test
reads what sd-scripts wrote.

Time and memory are in benchmarks/README.md (SDXL). The model is built once into $ONETWO_TEST_SDXL_DIR (default
.cache/tiny-sdxl, git-ignored, 5.1 GiB) and reused by later runs.

    python tests/test_e2e_sdxl.py modules SD_SCRIPTS MODEL_DIR RESULT.json   # the expected LoHa modules
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.sdscripts import (
    REPO,
    SD_SCRIPTS,
    Step,
    child_env,
    cpu_project,
    lora,
    need,
    needs_sdscripts,
    report_resources,
    run_onetwo,
    tail,
)

pytestmark = [pytest.mark.slow, pytest.mark.sdscripts, needs_sdscripts]

STAGES = ("stage1", "stage2")
# Two characters, to keep the slowest part short: every SDXL step and sample costs minutes on 2 cores.
NAMES = ("aoi", "beni")
PAIRS = [(left, right) for left in NAMES for right in NAMES if left != right]
LOHA = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
DIM = 8
# 4 images (stage 1) or 2 composites (stage 2), each stage's images in one bucket: one step a stage.
SDXL_DATASET = {"resolution": 64, "min_bucket_reso": 64, "max_bucket_reso": 128, "batch_size": 4}
IMAGES = {"stage1": 4, "stage2": 2}
# LyCORIS's kohya network on sd-scripts' SDXL UNet (conv_dim 0): in 11 Transformer2DModels, 70 transformer blocks x
# 10 Linear + 22 proj_in/proj_out; in 17 ResnetBlock2Ds, 17 time-embedding Linears + 11 1x1 skip convolutions.
UNET_MODULES = 750
# CLIP-L: 12 layers x (q, k, v, out, fc1, fc2); bigG has 32 layers (192 modules), the tiny model's 2.
TE1_MODULES, TE2_MODULES = 72, 12



@dataclass(frozen=True)
class Trained:
    root: Path
    project: Any  # onetwo.project.config.Project
    steps: dict[str, Step]


@pytest.fixture(scope="session")
def tiny_sdxl() -> Any:
    from tests.tiny_sdxl import build_tiny_sdxl

    return build_tiny_sdxl(Path(os.environ.get("ONETWO_TEST_SDXL_DIR") or REPO / ".cache" / "tiny-sdxl"))


onetwo = run_onetwo
# glibc keeps ~9 GiB of freed temporaries of the full-size SDXL UNet's first step (peak 20.6 GiB without these, on a
# 24 GiB machine); mapping large blocks and trimming at once keeps the peak near 12 GiB, at about twice the step time.
RETURN_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": "4194304", "MALLOC_TRIM_THRESHOLD_": "0"}


@pytest.fixture(scope="module")
def trained(tiny_sdxl: Any, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Trained:
    from onetwo.project.file import load_project

    root = tmp_path_factory.mktemp("e2e-sdxl")
    project_file = cpu_project(root, tiny_sdxl.model_dir, tiny_sdxl.tokenizer_cache_dir,
                               project={"base_model": str(tiny_sdxl.model_dir), "model": "sdxl"},
                               characters=[{"name": name, "images": f"data/{name}"} for name in NAMES],
                               samples={"steps": 1}, stage1={"dataset": SDXL_DATASET},
                               stage2={"seed": 2, "sample_every_n_epochs": 1, "dataset": SDXL_DATASET})
    steps: dict[str, Step] = {}
    for name, argv in (("composite", ["composite"]), ("stage1", ["train", "stage1"]),
                       ("stage2", ["train", "stage2"])):
        steps[name] = onetwo(root, project_file, *argv, env=RETURN_FREED_MEMORY)
        if steps[name].returncode != 0:
            break
    report_resources(request, root, steps, "e2e sdxl")
    return Trained(root, load_project(project_file), steps)


@pytest.fixture(scope="module")
def expected_modules(tiny_sdxl: Any, trained: Trained) -> dict[str, list[int]]:
    """Kohya name → weight shape of every module the LoHa should have, from the models' module trees."""
    result = trained.root / "expected-modules.json"
    done = subprocess.run([sys.executable, __file__, "modules", str(SD_SCRIPTS), str(tiny_sdxl.model_dir),
                           str(result)],
                          env=child_env(PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"deriving the module list failed:\n{tail(done.stdout + done.stderr)}")
    return json.loads(result.read_text(encoding="utf-8"))


def test_every_command_succeeds_and_trains_with_sdxl_train_network(trained: Trained) -> None:
    need(trained, "composite", "stage1", "stage2")
    for stage in STAGES:
        assert f"{stage}: done → {trained.project.lora_file(stage)}" in trained.steps[stage].output
        log = (trained.project.stage_dir(stage) / "train.log").read_text(encoding="utf-8")
        assert "sdxl_train_network.py" in trained.steps[stage].output + log


def test_expected_modules_are_sdxl_modules(expected_modules: dict[str, list[int]]) -> None:
    """The derivation itself: SDXL's UNet (sd-scripts' names), CLIP-L, and the tiny model's 2-layer bigG."""
    prefixes = [name.split("_")[1] for name in expected_modules]
    assert (prefixes.count("unet"), prefixes.count("te1"), prefixes.count("te2")) == (
        UNET_MODULES, TE1_MODULES, TE2_MODULES)
    assert expected_modules["lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"] == [640, 2048]
    assert expected_modules["lora_te2_text_model_encoder_layers_1_mlp_fc1"] == [5120, 1280]


@pytest.mark.parametrize("stage", STAGES)
def test_lora_has_exactly_the_sdxl_loha_modules_and_shapes(trained: Trained, stage: str,
                                                           expected_modules: dict[str, list[int]]) -> None:
    need(trained, stage)
    tensors, _ = lora(trained, stage)
    expected: dict[str, tuple[int, ...]] = {}
    for name, weight in expected_modules.items():
        out_features, in_features = weight[0], math.prod(weight[1:])
        expected[f"{name}.alpha"] = ()
        for factor in LOHA:
            expected[f"{name}.{factor}"] = (out_features, DIM) if factor.endswith("_a") else (DIM, in_features)
    actual = {key: tuple(tensor.shape) for key, tensor in tensors.items()}
    assert sorted(set(actual) - set(expected)) == [] and sorted(set(expected) - set(actual)) == []
    assert actual == expected
    assert {str(tensor.dtype) for tensor in tensors.values()} == {"float16"}
    assert {float(tensor) for key, tensor in tensors.items() if key.endswith(".alpha")} == {1.0}


@pytest.mark.parametrize("stage", STAGES)
def test_metadata_says_sdxl_and_names_the_stage(trained: Trained, stage: str) -> None:
    need(trained, stage)
    _, meta = lora(trained, stage)
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"  # sd-scripts' sdxl_model_util.MODEL_VERSION_SDXL_BASE_V1_0
    assert meta["modelspec.architecture"].startswith("stable-diffusion-xl-v1-base")
    assert (meta["ss_network_module"], meta["ss_network_dim"], meta["ss_network_alpha"]) == ("lycoris.kohya", "8", "1")
    assert json.loads(meta["ss_network_args"])["algo"] == "loha"
    assert meta["ss_output_name"] == f"e2e-{stage}" and meta["ss_steps"] == "1" and meta["ss_epoch"] == "1"
    (dataset,) = json.loads(meta["ss_datasets"])
    assert dataset["resolution"] == [64, 64] and dataset["num_train_images"] == IMAGES[stage]
    provenance = json.loads(meta["modelspec.onetwo"])
    assert (provenance["stage"], provenance["project"]) == (stage, "e2e")
    if stage == "stage2":
        frequency = json.loads(meta["ss_tag_frequency"])[trained.project.composite_dir.name]
        tokens = {tag for tag in frequency if tag.endswith("/composite")}
        assert tokens == {f"{left}/{right}/composite" for left, right in PAIRS}


def test_stage2_continued_from_stage1(trained: Trained) -> None:
    need(trained, "stage1", "stage2")
    first = trained.project.lora_file("stage1")
    # Whitespace is removed before matching: kohya's logger wraps long lines. `{}`: no key missing or unexpected.
    log = re.sub(r"\s+", "", (trained.project.stage_dir("stage2") / "train.log").read_text(encoding="utf-8"))
    assert re.sub(r"\s+", "", f"load network weights from {first}: {{}}") in log

    one, _ = lora(trained, "stage1")
    two, meta = lora(trained, "stage2")
    assert one.keys() == two.keys()
    hada = [key for key in one if ".hada_" in key]
    moved = max(float(abs(two[key].astype("float32") - one[key].astype("float32")).max()) for key in hada)
    assert 0 < moved <= 1e-2  # trained a little, from stage 1's weights
    spread = max(float(one[key].astype("float32").std()) for key in hada if key.endswith("hada_w1_b"))
    assert spread > 0.5  # a fresh start (random hada_w1_b, std ~1) would differ by ~1, not by <= 1e-2
    provenance = json.loads(meta["modelspec.onetwo"])
    assert provenance["source_sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()


def test_stage2_drew_every_sample_prompt(trained: Trained) -> None:
    from PIL import Image

    need(trained, "stage2")
    prompts = (trained.project.stage_dir("stage2") / "sample_prompts.txt").read_text(encoding="utf-8").splitlines()
    assert len(prompts) == len(NAMES) + len(PAIRS)
    samples = sorted((trained.project.output_dir / "sample").glob("e2e-stage2_e000001_*.png"))
    assert [path.name.split("_")[2] for path in samples] == [f"{index:02d}" for index in range(len(prompts))]
    for path in samples:
        with Image.open(path) as image:
            assert image.size == (64, 64)


def test_sample_draws_sdxl_stage1_and_a_rerun_draws_nothing(trained: Trained,
                                                            request: pytest.FixtureRequest) -> None:
    """`onetwo sample stage1` on SDXL, its one epoch file x 4 prompts x 1 seed at 64 px and 1 step, through
    sdxl_train_network.py's loader and sd-scripts' SDXL pipeline; the same command again draws nothing. Its peak
    RSS is printed (benchmarks/README.md): the merger keeps no second copy of the UNet's weights."""
    from PIL import Image

    need(trained, "stage1")
    project = trained.project
    args = ("sample", "stage1", "--seeds", "1", "--steps", "1", "--width", "64", "--height", "64")
    step = onetwo(trained.root, project.file, *args, env=RETURN_FREED_MEMORY)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\ne2e sdxl sample: {step.wall_s} s, peak RSS {step.peak_rss_gib} GiB")
    assert step.returncode == 0, tail(step.output, 80)
    out_dir = project.work_dir / "samples" / "stage1"
    file = project.lora_file("stage1")
    expected = {f"{file.stem}__p{index:02d}__s1" for index in range(len(NAMES) + len(PAIRS))}
    assert {path.stem for path in out_dir.glob("*.png")} == expected == {path.stem for path in out_dir.glob("*.json")}
    assert f"{file.name}: merged {UNET_MODULES + TE1_MODULES + TE2_MODULES} modules at strength 1" in step.output
    for stem in expected:
        record = json.loads((out_dir / f"{stem}.json").read_text(encoding="utf-8"))
        assert record["lora_file"] == file.name and record["settings"]["steps"] == 1
        with Image.open(out_dir / f"{stem}.png") as image:
            assert image.size == (64, 64)
    mtimes = {path.name: path.stat().st_mtime_ns for path in out_dir.iterdir()}
    again = onetwo(trained.root, project.file, *args)
    assert again.returncode == 0, tail(again.output, 80)
    assert f"all {len(expected)} images already drawn" in again.output and "base model loaded" not in again.output
    assert {path.name: path.stat().st_mtime_ns for path in out_dir.iterdir()} == mtimes


# ---------------------------------------------------------------------------------------------------------------
# The expected module list: run in a subprocess (it imports sd-scripts' UNet class), never inside pytest.


def derive_modules(sd_scripts: Path, model_dir: Path) -> dict[str, list[int]]:
    """What LyCORIS's kohya network trains, named as kohya names it, for the UNet sd-scripts trains SDXL with (its own
    SdxlUNet2DConditionModel, whose module paths are the original SDXL ones) and the two text encoders of
    `model_dir` (a list in sd-scripts, hence `lora_te1_` and `lora_te2_`). Built on the meta device."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from tests.sd1_lora import TEXT_ENCODER_BLOCKS, UNET_BLOCKS, kohya_name, target_paths

    sys.path.insert(0, str(sd_scripts))
    from library.sdxl_original_unet import SdxlUNet2DConditionModel

    with torch.device("meta"):
        unet = SdxlUNet2DConditionModel()
        te1 = CLIPTextModel(CLIPTextConfig.from_pretrained(model_dir / "text_encoder"))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(model_dir / "text_encoder_2"))
    found: dict[str, list[int]] = {}
    # sd-scripts' SDXL UNet has no module named like LyCORIS's name targets (conv_in, time_embedding.linear_1...).
    for prefix, root, blocks in (("lora_unet", unet, UNET_BLOCKS), ("lora_te1", te1, TEXT_ENCODER_BLOCKS),
                                 ("lora_te2", te2, TEXT_ENCODER_BLOCKS)):
        modules = dict(root.named_modules())
        for path in target_paths(root, blocks):
            found[kohya_name(prefix, path)] = list(modules[path].weight.shape)
    return found


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "modules":
        raise SystemExit(__doc__)
    Path(sys.argv[4]).write_text(json.dumps(derive_modules(Path(sys.argv[2]), Path(sys.argv[3]))), encoding="utf-8")
