"""End to end on the CPU: a seeded, randomly initialised SD1 model, three characters, and `onetwo composite`,
`onetwo train stage1`, `onetwo train stage2` run as a user runs them (subprocesses of the real CLI, every CPU
setting in the project file); then the test reads what sd-scripts wrote.

About 12 minutes and 10 GB of memory on 2 busy cores (benchmarks/README.md), plus the first build of the model into
$ONETWO_TEST_MODEL_DIR (default .cache/tiny-sd, git-ignored, reused by later runs).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from onetwo.kohya import hashes
from onetwo.project.config import Project
from onetwo.project.file import load_project
from tests.kohya_hashes import kohya_hashes
from tests.maskkit import fake_isnet_cache, write_isnet
from tests.sd1_lora import expected_shapes
from tests.sdscripts import (
    CHARACTERS,
    HAIR,
    REPO,
    TINY_DATASET,
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
from tests.tiny_model import TinySD, build_tiny_sd

pytestmark = [pytest.mark.slow, pytest.mark.sdscripts, needs_sdscripts]

STAGES = ("stage1", "stage2")
UI_MULTIPLIER = 0.8  # the LoRA strength of the UI merge test, as in <lora:name:0.8>
PAIRS = [(left, right) for left in CHARACTERS for right in CHARACTERS if left != right]
STAGE1_EPOCHS = 2



@dataclass(frozen=True)
class Trained:
    project: Project
    steps: dict[str, Step]
    data_before: dict[str, tuple[int, int]]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*"))}


@pytest.fixture(scope="session")
def tiny_model() -> TinySD:
    return build_tiny_sd(Path(os.environ.get("ONETWO_TEST_MODEL_DIR") or REPO / ".cache" / "tiny-sd"))


onetwo = run_onetwo


@pytest.fixture(scope="module")
def trained(tiny_model: TinySD, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Trained:
    root = tmp_path_factory.mktemp("e2e")
    # Stage 2 also renders onetwo's sample prompts (9, at 2 steps each): the one stage that samples, to save time.
    # Stage 2 trains on scene composites with the figures-only loss, stage 1 on the figures too (masks from the
    # stand-in segmentation model in a huggingface cache, offline): options beside the method, no extra run.
    # Stage 1 trains two epochs, so `onetwo sample` has two epoch files to draw.
    hub = fake_isnet_cache(root / "hub", write_isnet(root / "isnet"))
    project_file = cpu_project(root, tiny_model.model_dir, tiny_model.tokenizer_cache_dir,
                               composite={"width": 128, "height": 128, "layout": "scene", "loss_mask": "figures"},
                               stage1={"loss_mask": "figures", "max_train_epochs": STAGE1_EPOCHS,
                                       "sample_every_n_epochs": STAGE1_EPOCHS + 1, "dataset": TINY_DATASET},
                               stage2={"seed": 2, "sample_every_n_epochs": 1, "dataset": TINY_DATASET})
    before = snapshot(root / "data")
    steps: dict[str, Step] = {}
    for name, argv in (("composite", ["composite"]), ("stage1", ["train", "stage1"]),
                       ("stage2", ["train", "stage2"])):
        steps[name] = onetwo(root, project_file, *argv, env={"HF_HUB_CACHE": str(hub)})
        if steps[name].returncode != 0:
            break
    report_resources(request, root, steps, "e2e")
    return Trained(load_project(project_file), steps, before)


@functools.cache
def sd1_expected_shapes() -> dict[str, tuple[int, ...]]:
    return expected_shapes(dim=8)


def test_every_command_succeeds_and_says_where_its_output_is(trained: Trained) -> None:
    need(trained, "composite", "stage1", "stage2")
    project = trained.project
    composites = sorted(path.name for path in project.composite_dir.glob("*.png"))
    assert len(composites) == 2 * 3  # per_pair 2, three pairs
    for stage in STAGES:
        assert f"{stage}: done → {project.lora_file(stage)}" in trained.steps[stage].output
        assert (project.stage_dir(stage) / "train.log").is_file()


def subset_summary(log: str, image_dir: Path) -> str:
    """sd-scripts' dataset summary of the subset reading `image_dir`, from the training log, without whitespace
    (the log's rich handler wraps long lines)."""
    blocks = [block.split("custom_attributes:")[0] for block in re.sub(r"\s+", "", log).split("[Subset")]
    wanted = 'image_dir:"' + re.sub(r"\s+", "", str(image_dir)) + '"'
    found = [block for block in blocks if wanted in block]
    assert len(found) == 1, f"no single subset summary for {image_dir}"
    return found[0]


@pytest.mark.parametrize("stage", STAGES)
def test_masked_loss_reaches_sd_scripts(trained: Trained, stage: str) -> None:
    """Stage 2's scene composites and stage 1's weighted originals train with sd-scripts' alpha_mask on."""
    need(trained, stage)
    project = trained.project
    log = (project.stage_dir(stage) / "train.log").read_text(encoding="utf-8")
    folders = [project.composite_dir] if stage == "stage2" else \
        [project.originals_dir / character.slug for character in project.characters]
    for folder in folders:
        assert "alpha_mask:True" in subset_summary(log, folder), folder
    if stage == "stage2":
        manifest = json.loads(project.manifest_file.read_text(encoding="utf-8"))["composites"]
        assert {entry.get("layout") for entry in manifest.values()} == {"scene"}
        assert {entry["loss_mask"] for entry in manifest.values()} == {"figures"}


@pytest.mark.parametrize("stage", STAGES)
def test_lora_is_a_loha_of_dim_8_in_fp16(trained: Trained, stage: str) -> None:
    """The module set and shapes of a LoHa trained on a real SD1 checkpoint: 302 modules (72 text encoder, 230
    UNet), named after diffusers' UNet2DConditionModel and transformers' CLIPTextModel, so the UIs map every one."""
    need(trained, stage)
    tensors, _ = lora(trained, stage)
    expected = sd1_expected_shapes()
    assert len({key.split(".")[0] for key in expected}) == 302
    assert sum(key.startswith("lora_te_") for key in expected) == 72 * 5
    missing, unexpected = sorted(expected.keys() - tensors.keys()), sorted(tensors.keys() - expected.keys())
    assert (missing[:5], unexpected[:5]) == ([], []), (len(missing), len(unexpected))
    wrong = {key: (tensor.shape, expected[key]) for key, tensor in tensors.items() if tensor.shape != expected[key]}
    assert wrong == {}
    assert {str(tensor.dtype) for tensor in tensors.values()} == {"float16"}
    assert {float(tensor) for key, tensor in tensors.items() if key.endswith(".alpha")} == {1.0}


@pytest.mark.parametrize("stage", STAGES)
def test_metadata_names_the_stage_data_and_settings(trained: Trained, stage: str) -> None:
    need(trained, stage)
    project = trained.project
    _, meta = lora(trained, stage)
    assert (meta["ss_network_module"], meta["ss_network_dim"], meta["ss_network_alpha"]) == ("lycoris.kohya", "8", "1")
    network_args = json.loads(meta["ss_network_args"])
    assert (network_args["algo"], network_args["conv_dim"], network_args["conv_alpha"]) == ("loha", "0", "16")
    assert meta["ss_output_name"] == f"e2e-{stage}" and meta["ss_mixed_precision"] == "no"
    assert "onetwo" in meta["ss_training_comment"] and stage in meta["ss_training_comment"]
    provenance = json.loads(meta["modelspec.onetwo"])  # the metadata_onetwo key of the rendered config
    assert (provenance["stage"], provenance["project"]) == (stage, "e2e")

    dirs = json.loads(meta["ss_dataset_dirs"])
    frequency = json.loads(meta["ss_tag_frequency"])
    (dataset,) = json.loads(meta["ss_datasets"])
    assert dataset["resolution"] == [64, 64] and dataset["batch_size_per_device"] == 2
    epochs = STAGE1_EPOCHS if stage == "stage1" else 1
    assert dataset["num_train_images"] == 6 and meta["ss_steps"] == str(3 * epochs) and meta["ss_epoch"] == str(epochs)
    if stage == "stage1":  # one folder per character (onetwo's links), tagged with the character's token
        slugs = {character.slug: character.name for character in project.characters}
        assert dirs == {slug: {"n_repeats": 1, "img_count": 2} for slug in slugs}
        for slug, name in slugs.items():
            assert (frequency[slug][name], frequency[slug]["1girl"], frequency[slug][HAIR[name]]) == (2, 2, 2)
        assert [subset["class_tokens"] for subset in dataset["subsets"]] == list(CHARACTERS)
        assert all(subset["shuffle_caption"] for subset in dataset["subsets"])
    else:  # the composites folder, tagged with every A/B/COMPOSITE token once (kohya lower-cases tags)
        folder = project.composite_dir.name
        assert dirs == {folder: {"n_repeats": 1, "img_count": 6}}
        tokens = {tag: count for tag, count in frequency[folder].items() if tag.endswith("/composite")}
        assert tokens == {f"{left}/{right}/composite": 1 for left, right in PAIRS}
        (subset,) = dataset["subsets"]
        assert (subset["shuffle_caption"], subset["flip_aug"], subset["keep_tokens"]) == (False, False, 1)


def test_stage2_continued_from_stage1(trained: Trained) -> None:
    need(trained, "stage1", "stage2")
    project = trained.project
    first = project.lora_file("stage1")
    # sd-scripts prints this line; `{}` means no key was missing or unexpected (LyCORIS loads with strict=False).
    # Whitespace is removed before matching: kohya's logger wraps long lines.
    log = re.sub(r"\s+", "", (project.stage_dir("stage2") / "train.log").read_text(encoding="utf-8"))
    assert re.sub(r"\s+", "", f"load network weights from {first}: {{}}") in log
    assert "loadnetworkweights" not in re.sub(r"\s+", "", trained.steps["stage1"].output)

    one, _ = lora(trained, "stage1")
    two, meta = lora(trained, "stage2")
    assert one.keys() == two.keys()
    hada = [key for key in one if ".hada_" in key]
    moved = max(float(abs(two[key].astype("float32") - one[key].astype("float32")).max()) for key in hada)
    assert 0 < moved <= 1e-2  # trained a little, from stage 1's weights
    spread = max(float(one[key].astype("float32").std()) for key in hada if key.endswith("hada_w1_b"))
    assert spread > 0.5  # a fresh start (random hada_w1_b, std ~1) would differ by ~1, not by <= 1e-2

    provenance = json.loads(meta["modelspec.onetwo"])
    assert provenance["source"] == first.name
    assert provenance["source_sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()


def test_hashes_are_the_ones_sd_scripts_computes(trained: Trained) -> None:
    """AUTOMATIC1111 shows sshs_model_hash and Civitai links by it: onetwo replaced LyCORIS's own value with what
    sd-scripts' train_util computes for its LoRAs, in every file of both stages."""
    need(trained, "stage1", "stage2")
    files = [trained.project.lora_file(stage) for stage in STAGES]
    reference = kohya_hashes(files, trained.project.file.parent)
    for stage, file in zip(STAGES, files, strict=True):
        _, meta = lora(trained, stage)
        assert [meta["sshs_model_hash"], meta["sshs_legacy_hash"]] == reference[str(file)]
        assert f"{file.name}: set sshs_model_hash {meta['sshs_model_hash'][:12]}" in trained.steps[stage].output


def test_the_uis_merge_gives_what_lycoris_computes(trained: Trained, tiny_model: TinySD) -> None:
    """ComfyUI, Forge and AUTOMATIC1111 merge W += m · alpha/dim · (w1_a @ w1_b) ⊙ (w2_a @ w2_b): merged that way
    into the tiny model, stage 2's file gives the outputs LyCORIS's forward hooks give."""
    need(trained, "stage2")
    root = trained.project.file.parent
    result = root / "ui-merge.json"
    command = [sys.executable, str(REPO / "tests" / "sd1_lora.py"), "compare", str(trained.project.lora_file("stage2")),
               str(tiny_model.model_dir), str(result), str(UI_MULTIPLIER)]
    done = subprocess.run(command, cwd=root, env=child_env(), capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, tail(done.stdout + done.stderr)
    compared = json.loads(result.read_text(encoding="utf-8"))
    assert compared["loaded"] == {"text_encoder": 72, "unet": 230} and compared["unmatched"] == []
    assert compared["restored_exactly"]
    for output, values in compared["outputs"].items():
        assert values["merged_vs_hooked"] <= 1e-5, (output, values)
        # visible: LyCORIS's merge_to, with (alpha/dim)² (1/8 of the strength), would miss by 7/8 of the effect
        assert values["effect"] >= 100 * 1e-5, (output, values)


def test_stage2_drew_every_sample_prompt(trained: Trained) -> None:
    """kohya renders each line onetwo wrote: each character alone, then each pair in both orders."""
    from PIL import Image

    need(trained, "stage2")
    project = trained.project
    prompts = (project.stage_dir("stage2") / "sample_prompts.txt").read_text(encoding="utf-8").splitlines()
    assert len(prompts) == len(CHARACTERS) + len(PAIRS)
    # <output_name>_e<epoch:06d>_<prompt index:02d>_<YYYYmmddHHMMSS>_<seed>.png
    samples = sorted((project.output_dir / "sample").glob("e2e-stage2_e000001_*.png"))
    assert [path.name.split("_")[2] for path in samples] == [f"{index:02d}" for index in range(len(prompts))]
    for path in samples:
        with Image.open(path) as image:
            assert image.size == (64, 64)
    assert not list((project.output_dir / "sample").glob("e2e-stage1_*"))  # stage 1 did not sample


def test_user_image_folders_are_untouched(trained: Trained) -> None:
    need(trained, "composite", "stage1", "stage2")
    data = trained.project.file.parent / "data"
    assert snapshot(data) == trained.data_before  # no caption, link or latent cache was written there


def test_stage2_refuses_a_stage1_file_of_another_network(trained: Trained) -> None:
    need(trained, "stage2")
    root = trained.project.file.parent
    refused = onetwo(root, trained.project.file, "train", "stage2", "--set", "network_dim=16")
    assert refused.returncode == 2, tail(refused.output)
    stage1 = trained.project.lora_file("stage1").name
    assert f"network_dim: stage 1 ({stage1}) has 8.0, stage 2 would use 16.0" in refused.output
    assert "Traceback" not in refused.output


def test_pair_matrix_on_the_tiny_model(trained: Trained) -> None:
    need(trained, "stage2")
    from PIL import Image

    root = trained.project.file.parent
    target = root / "matrix.png"
    step = onetwo(root, trained.project.file, "matrix", str(trained.project.lora_file("stage2")), "--steps", "1",
                  "--out", str(target))
    assert step.returncode == 0, tail(step.output, 80)
    assert "e2e-stage2.safetensors: merged 302 modules at strength 1" in step.output  # the whole LoHa, merged
    with Image.open(target) as grid:
        # three characters: a 3 x 3 grid of 64 px cells, each with a label strip under it
        assert grid.width == 3 * 64 and grid.height > 3 * 64


SAMPLE_ARGS = ("--seeds", "2", "--steps", "1", "--width", "64", "--height", "64")


def test_sample_draws_every_epoch_file_prompt_and_seed_and_a_rerun_draws_nothing(trained: Trained) -> None:
    """`onetwo sample stage1` through the real CLI: stage 1's two epoch files x 9 prompts x 2 seeds at 64 px and 1
    step, one model load for both files, sidecars as agreed with eval; the same command again draws nothing."""
    from PIL import Image

    need(trained, "stage1")
    project = trained.project
    step = onetwo(project.file.parent, project.file, "sample", "stage1", *SAMPLE_ARGS)
    assert step.returncode == 0, tail(step.output, 80)
    out_dir = project.work_dir / "samples" / "stage1"
    files = [project.output_dir / "e2e-stage1-000001.safetensors", project.lora_file("stage1")]
    prompts = len(CHARACTERS) + len(PAIRS)
    pngs = sorted(out_dir.glob("*.png"))
    assert len(pngs) == len(files) * prompts * 2 == len(list(out_dir.glob("*.json")))
    assert step.output.count("base model loaded in") == 1
    for file in files:
        assert f"{file.name}: merged 302 modules at strength 1" in step.output
    hashes = {file.name: kohya_hashes([file], project.file.parent)[str(file)][0] for file in files}
    records = {}
    for png in pngs:
        record = json.loads(png.with_suffix(".json").read_text(encoding="utf-8"))
        records[png.stem] = record
        assert png.stem == f"{Path(record['lora_file']).stem}__p{record['prompt_index']:02d}__s{record['seed']}"
        assert record["sshs_model_hash"] == hashes[record["lora_file"]]
        assert record["epoch"] == (1 if record["lora_file"] == files[0].name else STAGE1_EPOCHS)
        assert record["settings"]["steps"] == 1 and record["seed"] in (1, 2)
        with Image.open(png) as image:
            assert image.size == (64, 64)
    assert {tuple(record["characters"]) for record in records.values()} == {
        *((name,) for name in CHARACTERS), *PAIRS}
    pixels = {stem: Image.open(out_dir / f"{stem}.png").convert("RGB").tobytes() for stem in records}
    changed = sum(pixels[f"e2e-stage1-000001__p{index:02d}__s1"] != pixels[f"e2e-stage1__p{index:02d}__s1"]
                  for index in range(prompts))
    assert changed == prompts  # each epoch file drew its own images: its LoRA was applied, not the last one's

    mtimes = {path.name: path.stat().st_mtime_ns for path in out_dir.iterdir()}
    again = onetwo(project.file.parent, project.file, "sample", "stage1", *SAMPLE_ARGS)
    assert again.returncode == 0, tail(again.output, 80)
    assert f"all {len(pngs)} images already drawn" in again.output and "base model loaded" not in again.output
    assert {path.name: path.stat().st_mtime_ns for path in out_dir.iterdir()} == mtimes


def test_sample_splits_the_epoch_files_between_two_processes(trained: Trained) -> None:
    """`--accelerate num_processes=2` on the CPU (two processes over gloo): accelerate's split gives each process
    one of stage 1's two epoch files; each loads the base model once and draws its file's images, and every image is
    drawn once."""
    need(trained, "stage1")
    project = trained.project
    out_dir = project.work_dir / "samples" / "stage1"
    shutil.rmtree(out_dir, ignore_errors=True)  # the other sample test's images, drawn with other settings
    step = onetwo(project.file.parent, project.file, "sample", "stage1", "--seeds", "1", "--steps", "1", "--width",
                  "64", "--height", "64", "--accelerate", "cpu=false", "--accelerate", "multi_gpu=true",
                  "--accelerate", "num_processes=2", "--accelerate", "num_cpu_threads_per_process=1")
    assert step.returncode == 0, tail(step.output, 80)
    files = [project.output_dir / "e2e-stage1-000001.safetensors", project.lora_file("stage1")]
    drawn_by: dict[str, set[int]] = {}
    for index, name in re.findall(r"sample: process (\d+): (\S+): merged 302 modules", step.output):
        drawn_by.setdefault(name, set()).add(int(index))
    assert drawn_by.keys() == {file.name for file in files}, tail(step.output, 80)
    assert sorted(index for indices in drawn_by.values() for index in indices) == [0, 1], drawn_by
    assert sorted(re.findall(r"sample: process (\d+): base model loaded in", step.output)) == ["0", "1"]
    prompts = len(CHARACTERS) + len(PAIRS)
    expected = {f"{file.stem}__p{index:02d}__s1" for file in files for index in range(prompts)}
    assert sorted(path.stem for path in out_dir.glob("*.png")) == sorted(expected)
    assert sorted(path.stem for path in out_dir.glob("*.json")) == sorted(expected)
    assert not [path for path in out_dir.iterdir() if path.name.startswith(".")]  # no scratch folder left
    shutil.rmtree(out_dir)


def test_joint_mode_trains_originals_and_composites_in_one_run(tiny_model: TinySD,
                                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("joint")
    project_file = cpu_project(root, tiny_model.model_dir, tiny_model.tokenizer_cache_dir,
                               project={"base_model": str(tiny_model.model_dir), "mode": "joint"},
                               joint={"dataset": TINY_DATASET})
    step = onetwo(root, project_file, "train", "joint")
    assert step.returncode == 0, tail(step.output, 80)
    project = load_project(project_file)
    from safetensors import safe_open

    with safe_open(str(project.lora_file("joint")), framework="np") as handle:
        metadata = handle.metadata()
        assert len({key.split(".")[0] for key in handle.keys()}) == 302  # noqa: SIM118
    assert len(json.loads(metadata["ss_datasets"])) == 2
    dirs = json.loads(metadata["ss_dataset_dirs"])
    assert set(dirs) == {*CHARACTERS, "composites"}


def test_eval_scores_the_tiny_models_samples(trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`onetwo eval stage2` on the real sample folder, the stand-in models in a huggingface cache, offline: the
    report's structure and counts (the tiny model draws noise, so not its verdicts)."""
    pytest.importorskip("onnxruntime", reason="onetwo eval needs onnxruntime: pip install 'onetwo[eval]'")
    pytest.importorskip("onnx", reason="building the stand-in models needs onnx (in the dev extra)")
    from PIL import Image

    from tests import evalkit

    need(trained, "stage2")
    models = evalkit.write_models(tmp_path / "models")
    monkeypatch.setenv("HF_HUB_CACHE", str(evalkit.fake_hub_cache(tmp_path / "hub", models)))
    project = trained.project
    samples = sorted((project.output_dir / "sample").glob("e2e-stage2_e*.png"))
    # an earlier run's sample (written before this run's ss_training_started_at) and `onetwo sample` images, one of
    # an epoch file sd-scripts saved (its hash as the sample command records it), one of a file no longer there
    earlier = samples[0].with_name(re.sub(r"_\d{14}_", "_20000101000000_", samples[0].name))
    shutil.copyfile(samples[0], earlier)
    os.utime(earlier, (946684800, 946684800))
    final = project.lora_file("stage2")
    drawn = project.work_dir / "samples" / "stage2"
    evalkit.write_sampled(drawn, final, 99, 0, (next(iter(CHARACTERS)),), 5)
    stranger = evalkit.write_sampled(drawn, final, 98, 0, (next(iter(CHARACTERS)),), 6).with_suffix(".json")
    stranger.write_text(stranger.read_text(encoding="utf-8").replace(hashes.compute(final)[0], "0" * 64),
                        encoding="utf-8")
    step = onetwo(project.file.parent, project.file, "eval", "stage2", "--offline")
    shutil.rmtree(drawn)
    earlier.unlink()
    assert step.returncode == 0, tail(step.output, 80)
    assert "2 sample(s) of earlier runs of stage2 left out" in step.output
    out_dir = project.work_dir / "eval" / "stage2"
    report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    assert report["images"][-1]["epoch"] == 99 and report["images"][-1]["source"] == "sample"
    report["images"] = [image for image in report["images"] if image["source"] == "training"]
    report["epochs"] = [epoch for epoch in report["epochs"] if epoch["epoch"] != 99]
    epochs = sorted({int(path.name.split("_")[1][1:]) for path in samples})
    assert [epoch["epoch"] for epoch in report["epochs"]] == epochs
    assert len(report["images"]) == len(samples) == len(CHARACTERS) + len(PAIRS)
    totals = report["totals"]
    assert sum(totals["groups"].values()) == len(PAIRS) and sum(totals["singles"].values()) == len(CHARACTERS) + 1
    assert report["best_epoch"]["epoch"] in [*epochs, 99] and report["seam"]["positives"] > 0
    assert {image["characters"][0] for image in report["images"]} == set(CHARACTERS)
    for name in ("curves.png", "contact_sheet.png"):
        with Image.open(out_dir / name) as image:
            assert image.format == "PNG"
    assert f"report: {out_dir / 'report.json'}" in step.output


def test_sample_draws_what_training_drew(trained: Trained) -> None:
    """Last, so the eval test above sees stage 2's training samples alone. The same file, prompt, seed and
    settings: `onetwo sample` (the LoHa merged as the UIs merge it) draws the image stage 2's training drew with
    LyCORIS's hooks, within a pixel level on average. sd-scripts' training drew its last prompt all black (NaN) in
    every run seen here, where `onetwo sample` draws a picture: such blank training images are left out of the
    comparison, and none of onetwo's may be blank."""
    import numpy as np
    from PIL import Image

    need(trained, "stage2")
    project = trained.project
    step = onetwo(project.file.parent, project.file, "sample", "stage2", "--seeds", "1")
    assert step.returncode == 0, tail(step.output, 80)
    out_dir = project.work_dir / "samples" / "stage2"
    differences, blank = {}, []
    for index in range(len(CHARACTERS) + len(PAIRS)):
        (trained_png,) = (project.output_dir / "sample").glob(f"e2e-stage2_e000001_{index:02d}_*_1.png")
        with Image.open(trained_png) as a, Image.open(out_dir / f"e2e-stage2__p{index:02d}__s1.png") as b:
            theirs, ours = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
        assert theirs.shape == ours.shape and ours.std() > 0, index
        if theirs.std() == 0:
            blank.append(index)
            continue
        differences[index] = round(float(np.abs(theirs - ours).mean()), 4)
    assert len(differences) >= len(CHARACTERS) + len(PAIRS) - 1, (differences, blank)
    assert max(differences.values()) <= 1.0, f"mean differences {differences}, blank in training {blank}"


def test_synth_draws_with_a_stage1_file_keeps_what_the_backend_accepts_and_stage2_deals_it(
        trained: Trained, tmp_path: Path) -> None:
    """`onetwo synth` through the real CLI with stage 1's epoch-1 file at 64 px and 1 step (3 drawings each of two
    characters, one model load), judged by tests/synthkit.py's stand-in, which accepts the pictures the test names.
    In a project file of its own (another work_dir, side-by-side composites), so the trained project's composites
    and samples stay as the tests above left them."""
    import tomli_w
    from PIL import Image

    from onetwo.eval.score import load_reference
    from onetwo.project.strict import tomllib
    from tests.synthkit import VERDICTS, pixel_key

    need(trained, "stage1")
    project = trained.project
    root = project.file.parent
    data = tomllib.loads(project.file.read_text(encoding="utf-8"))
    data["project"]["work_dir"] = "build-synth"
    data["composite"] = {key: value for key, value in data["composite"].items() if key not in ("layout", "loss_mask")}
    data["composite"]["per_pair"] = 6
    data["stage1"].pop("loss_mask", None)
    data["synthetic"] = {"per_character": 3, "max_share": 0.34}
    file = root / "synth.toml"
    file.write_text(tomli_w.dumps(data), encoding="utf-8")
    synth = load_project(file)
    verdicts = tmp_path / "verdicts.json"
    env = {VERDICTS: str(verdicts)}
    # epoch 1's file: the tiny model's final stage-1 file draws every image all black (NaN) here, so the drawings
    # would all be one picture
    argv = ("synth", "aoi", "beni", "--epoch", "1", "--backend", "tests.synthkit:backends", "--steps", "1",
            "--width", "64", "--height", "64")

    first = onetwo(root, file, *argv, env=env)
    assert first.returncode == 0, tail(first.output, 80)
    assert first.output.count("base model loaded in") == 1
    out_dir = synth.synthetic_dir
    drawn = {name: sorted((out_dir / name).glob("*.png")) for name in ("aoi", "beni")}
    assert [len(paths) for paths in drawn.values()] == [3, 3] and not (out_dir / "kiiro").exists()
    for paths in drawn.values():
        for png in paths:
            record = json.loads(png.with_suffix(".json").read_text(encoding="utf-8"))
            assert record["lora_file"] == "e2e-stage1-000001.safetensors" and record["epoch"] == 1
            assert record["settings"]["steps"] == 1 and record["characters"] == [png.parent.name]
            with Image.open(png) as image:
                assert image.size == (64, 64)
    pictures = {pixel_key(Image.open(png)) for paths in drawn.values() for png in paths}
    assert len(pictures) == 6  # six seeds, six pictures
    report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    assert {image["reason"] for entry in report["characters"].values() for image in entry["images"]} == {"no figure"}

    # the test decides what the drawings show: aoi's first two are aoi, beni's first is beni and its second aoi;
    # beni's third is made a copy of its first (a near-duplicate of a kept drawing)
    shutil.copyfile(drawn["beni"][0], drawn["beni"][2])
    known = {pixel_key(load_reference(path, synth.composite.background)): name for name in CHARACTERS
             for path in sorted((root / "data" / name).glob("*.png"))}
    for png, name in ((drawn["aoi"][0], "aoi"), (drawn["aoi"][1], "aoi"), (drawn["beni"][0], "beni"),
                      (drawn["beni"][1], "aoi")):
        with Image.open(png) as image:
            known[pixel_key(image)] = name
    verdicts.write_text(json.dumps(known), encoding="utf-8")
    second = onetwo(root, file, *argv, env=env)
    assert second.returncode == 0, tail(second.output, 80)
    assert "all 6 images already drawn" in second.output and "base model loaded" not in second.output
    report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    reasons = {name: [image["reason"] if not image["kept"] else "kept" for image in entry["images"]]
               for name, entry in report["characters"].items()}
    assert reasons["aoi"] == ["kept", "kept", "no figure"]
    assert reasons["beni"][0] == "kept" and reasons["beni"][1] == "shows aoi"
    assert reasons["beni"][2].startswith("near-duplicate of kept drawing beni/")
    with Image.open(out_dir / "contact_sheet.png") as sheet:
        assert sheet.format == "PNG"

    mtime = (out_dir / "report.json").stat().st_mtime_ns
    third = onetwo(root, file, *argv, env=env)
    assert third.returncode == 0, tail(third.output, 80)
    assert "aoi: earlier decisions kept" in third.output and "beni: earlier decisions kept" in third.output
    assert (out_dir / "report.json").stat().st_mtime_ns == mtime

    rendered = onetwo(root, file, "render", "stage2")
    assert rendered.returncode == 0, tail(rendered.output, 80)
    manifest = json.loads(synth.manifest_file.read_text(encoding="utf-8"))["composites"]
    flagged = {source for entry in manifest.values()
               for source, flag in zip(entry["sources"], entry.get("synthetic", ()), strict=False) if flag}
    # max_share 0.34 of 2 images each: one drawing each joins, aoi's closest (a tie: the first by name)
    assert flagged == {str(drawn["aoi"][0]), str(drawn["beni"][0])}
    every = {source for entry in manifest.values() for source in entry["sources"]}
    assert not every & {str(drawn["aoi"][1]), str(drawn["aoi"][2]), str(drawn["beni"][1]), str(drawn["beni"][2])}
    line = next(text for text in rendered.output.splitlines() if text.strip().startswith("synthetic "))
    assert "aoi 1 of 3 deck images, in 4 of 12 composites (33%" in line and "max_share 0.34" in line
    (tmp_path / "plan.txt").write_text(rendered.output, encoding="utf-8")
