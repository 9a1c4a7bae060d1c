"""Contract tests: what onetwo writes is read by sd-scripts' own code exactly as onetwo means it. No training.

Projects are rendered through the real CLI; one subprocess then loads every file the way train_network.py does
(tests/sdscripts.py, `probe`): the training TOML through `read_config_from_file` and, key by key, through the
parser's own types, choices and nargs; the dataset TOML through `ConfigSanitizer` + `BlueprintGenerator` and the
dataset group (kohya reads the images and captions and assigns buckets); the prompts through `load_prompts`.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from onetwo.cli import main
from onetwo.kohya.render import flatten_sections
from onetwo.project.config import Project
from onetwo.project.file import load_project
from tests.sdscripts import (
    CHARACTERS,
    HAIR,
    REPO,
    SD_SCRIPTS,
    child_env,
    cpu_project,
    needs_sdscripts,
    run_probe,
    tail,
    write_project,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytestmark = [pytest.mark.sdscripts, needs_sdscripts]

NAMES = list(CHARACTERS)
PAIRS = list(itertools.permutations(NAMES, 2))
SAMPLES = {"negative": "lowres, worst quality", "steps": 3, "scale": 5.5, "seed": 7}
# reference: the shipped templates untouched, "3_aoi" for kohya-style repeats, composites of the size onetwo picks.
# cpu: the end-to-end test's project (every CPU override in the project file) plus --set values of several kinds.
# sdxl: project.model = "sdxl" (templates/sdxl, checked against sdxl_train_network.py's parser).
# joint: project.mode = "joint" (one run on a dataset of the originals and a dataset of the composites).
# anima: project.model = "anima" (templates/anima, anima_train_network.py's parser; captions not shuffled).
VARIANTS: dict[str, dict[str, Any]] = {
    "reference": {"project": {}, "resolution": {"stage1": 640, "stage2": 768}, "batch": {"stage1": 4, "stage2": 2}},
    "cpu": {"project": {}, "resolution": {"stage1": 64, "stage2": 64}, "batch": {"stage1": 1, "stage2": 2}},
    "sdxl": {"project": {"model": "sdxl"}, "script": "sdxl_train_network",
             "resolution": {"stage1": 1024, "stage2": 1024}, "batch": {"stage1": 2, "stage2": 1}},
    "joint": {"project": {"mode": "joint"}, "resolution": {"joint": 768}},
    "anima": {"project": {"model": "anima", "text_encoder": "models/qwen3", "vae": "models/vae.safetensors",
                          "t5_tokenizer": "models/t5"}, "script": "anima_train_network",
              "resolution": {"stage1": 768, "stage2": 1024}, "batch": {"stage1": 2, "stage2": 1}},
}
SEQUENTIAL = ["reference", "cpu", "sdxl"]
CPU_SETS = ["lr_scheduler=constant_with_warmup", "lr_warmup_steps=0.1", "text_encoder_lr=0.0001",
            'network_args=["conv_dim=0", "conv_alpha=16", "algo=loha"]', "max_token_length=150"]
STAGE_SETS = {"stage1": ["dataset.batch_size=1"], "stage2": []}
# Values train_network.py would silently misread or ignore: the probe must name each of them.
BROKEN_CONFIG = """
[training_arguments]
xformer = true
resolution = 64
max_token_length = 100
network_args = "algo=loha"
metadata_number = 1
clip_skip = "2"
"""
BROKEN_DATASET = """
[[datasets]]
resolutoin = 64
  [[datasets.subsets]]
  image_dir = "x"
"""


def render(project_file: Path, stage: str, *sets: str) -> None:
    argv = ["--project", str(project_file), "render", stage, "--no-progress", "--workers", "1"]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0, f"onetwo render {stage} failed"


def stages(variant: str) -> tuple[str, ...]:
    return ("joint",) if variant == "joint" else ("stage1", "stage2")


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("contract")
    projects = {
        variant: write_project(root / variant, {"project": VARIANTS[variant]["project"], "samples": SAMPLES},
                               folders={"aoi": "3_aoi", "beni": "beni", "kiiro": "kiiro"})
        for variant in ("reference", "sdxl", "joint", "anima")
    }
    projects["cpu"] = cpu_project(root / "cpu", root / "no-model", root / "no-tokenizers", samples=SAMPLES)
    jobs: dict[str, dict[str, Any]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for variant, file in projects.items():
        for stage in stages(variant):
            render(file, stage, *(CPU_SETS + STAGE_SETS[stage] if variant == "cpu" else []))
        with Image.open(next((file.parent / "build" / "composites").glob("*.png"))) as composite:
            sizes[variant] = composite.size
        for stage in stages(variant):
            folder = file.parent / "build" / stage
            jobs[f"{variant}-{stage}"] = {
                "config": str(folder / "config.toml"), "dataset": str(folder / "dataset.toml"),
                "prompts": str(folder / "sample_prompts.txt"), "images": True,
                "select": [[512, 512], list(sizes[variant])],  # the buckets kohya gives a square and a composite
                "script": VARIANTS[variant].get("script", "train_network"),
            }
    for folder, script in ((REPO / "templates", "train_network"), (REPO / "templates" / "sdxl", "sdxl_train_network"),
                           (REPO / "templates" / "anima", "anima_train_network")):
        jobs[f"template-{folder.name}-train"] = {"config": str(folder / "train.toml"), "script": script}
        for stage in ("stage1", "stage2", "joint"):
            jobs[f"template-{folder.name}-dataset-{stage}"] = {"dataset": str(folder / f"dataset-{stage}.toml"),
                                                               "script": script}
    (root / "broken.toml").write_text(BROKEN_CONFIG, encoding="utf-8")
    (root / "broken-dataset.toml").write_text(BROKEN_DATASET, encoding="utf-8")
    jobs["broken"] = {"config": str(root / "broken.toml")}
    jobs["broken-dataset"] = {"dataset": str(root / "broken-dataset.toml")}
    results = run_probe({"jobs": jobs}, root / "probe")
    return {"results": results, "jobs": jobs, "composite_size": sizes,
            "projects": {name: load_project(file) for name, file in projects.items()}}


RENDERED = [f"{variant}-{stage}" for variant in VARIANTS for stage in stages(variant)]
TEMPLATES = [f"template-{folder}-{kind}" for folder in ("templates", "sdxl", "anima")
             for kind in ("train", "dataset-stage1", "dataset-stage2", "dataset-joint")]


@pytest.mark.parametrize("job", RENDERED)
def test_training_toml_is_read_by_train_network_as_written(probed: dict[str, Any], job: str) -> None:
    """Every key is an argument of train_network.py (sdxl_train_network.py for SDXL); every value is what the
    parser's own type makes of it."""
    result = probed["results"][job]
    assert result["config_problems"] == []
    with open(probed["jobs"][job]["config"], "rb") as handle:
        written = flatten_sections(tomllib.load(handle))
    assert result["config"] == written  # the `toml` package kohya uses reads tomli_w's output the same way
    assert written["output_name"] == f"e2e-{job.split('-')[1]}"


def test_cpu_overrides_and_sets_reach_train_network(probed: dict[str, Any]) -> None:
    config = probed["results"]["cpu-stage2"]["config"]
    assert (config["xformers"], config["sdpa"], config["optimizer_type"]) == (False, True, "AdamW")
    assert (config["lr_scheduler"], config["lr_warmup_steps"], config["max_token_length"]) == \
           ("constant_with_warmup", 0.1, 150)
    assert config["network_args"] == ["conv_dim=0", "conv_alpha=16", "algo=loha"]
    assert config["seed"] == 2 and config["network_weights"].endswith("e2e-stage1.safetensors")


def test_the_probe_names_what_kohya_would_misread(probed: dict[str, Any]) -> None:
    problems = "\n".join(probed["results"]["broken"]["config_problems"])
    assert "xformer: not an argument of train_network.py" in problems
    assert "resolution = 64: the parser reads --resolution 64 as '64'" in problems  # must be a TOML string
    assert "max_token_length = 100: train_network.py's parser refuses" in problems  # not a choice
    assert "network_args = 'algo=loha'" in problems  # kohya would iterate the string letter by letter
    assert "metadata_number: not an argument" in problems  # only strings reach modelspec.*
    assert "clip_skip = '2'" in problems
    (rejected,) = probed["results"]["broken-dataset"]["dataset_problems"]
    assert "resolutoin" in rejected


@pytest.mark.parametrize("job", RENDERED)
def test_dataset_toml_passes_sanitizer_and_blueprint(probed: dict[str, Any], job: str) -> None:
    """ConfigSanitizer(True, False, False, True) and train_network's own ConfigSanitizer + BlueprintGenerator."""
    result = probed["results"][job]
    assert result["dataset_problems"] == []
    with open(probed["jobs"][job]["dataset"], "rb") as handle:
        assert result["dataset"] == tomllib.load(handle)


def check_originals(dataset: dict[str, Any], project: Project, resolution: int, batch: int, aoi_repeats: int) -> None:
    """kohya reads one subset per character: onetwo's links and captions, its repeats, the kept name token."""
    assert dataset["resolution"] == [resolution, resolution] and dataset["batch_size"] == batch
    subsets = {subset["class_tokens"]: subset for subset in dataset["subsets"]}
    assert list(subsets) == NAMES
    for character in project.characters:
        subset = subsets[character.name]
        # links to the user's images with onetwo's captions, in the work dir (kohya's caches land there, not in data/)
        assert Path(subset["image_dir"]).name == character.slug
        assert Path(subset["image_dir"]).is_relative_to(project.work_dir)
        repeats = aoi_repeats if character.name == "aoi" else 1  # from the "3_aoi" folder name
        assert (subset["img_count"], subset["num_repeats"]) == (2, repeats)
        assert (subset["keep_tokens"], subset["caption_extension"], subset["shuffle_caption"]) == (1, ".txt", True)
    captions = sorted(image["caption"] for image in dataset["images"].values())
    assert captions == sorted(f"{name}, 1girl, {HAIR[name]}, pose{index}" for name in NAMES for index in range(2))
    assert dataset["num_train_images"] == 2 * (len(NAMES) - 1 + aoi_repeats)


def check_composites(dataset: dict[str, Any], project: Project, resolution: int, batch: int) -> None:
    """kohya reads the composites folder: both orders of each pair, each side's tags on its side, nothing cropped."""
    assert dataset["resolution"] == [resolution, resolution] and dataset["batch_size"] == batch
    (subset,) = dataset["subsets"]
    assert subset["image_dir"] == str(project.composite_dir)
    assert (subset["img_count"], subset["num_repeats"], subset["class_tokens"]) == (2 * 3, 1, None)
    assert (subset["flip_aug"], subset["shuffle_caption"], subset["keep_tokens"]) == (False, False, 1)
    tokens = sorted(image["caption"].split(",")[0] for image in dataset["images"].values())
    assert tokens == sorted(f"{left}/{right}/COMPOSITE" for left, right in PAIRS)  # each order once
    for path, image in dataset["images"].items():
        left, right = image["caption"].split("/")[:2]
        assert re.fullmatch(f"{left}/{right}/COMPOSITE, 2girls, {HAIR[left]}, pose[01], {HAIR[right]}, pose[01]",
                            image["caption"]), image["caption"]
        (width, height), (bucket_w, bucket_h) = image["size"], image["bucket"]
        assert width * bucket_h == height * bucket_w, f"{path}: {image['size']} cropped into {image['bucket']}"


@pytest.mark.parametrize("variant", SEQUENTIAL)
def test_kohya_reads_stage1_images_captions_and_repeats(probed: dict[str, Any], variant: str) -> None:
    (dataset,) = probed["results"][f"{variant}-stage1"]["datasets"]
    settings = VARIANTS[variant]
    check_originals(dataset, probed["projects"][variant], settings["resolution"]["stage1"],
                    settings["batch"]["stage1"], 1 if variant == "cpu" else 3)


@pytest.mark.parametrize("variant", SEQUENTIAL)
def test_kohya_reads_composites_in_order_uncropped(probed: dict[str, Any], variant: str) -> None:
    (dataset,) = probed["results"][f"{variant}-stage2"]["datasets"]
    settings = VARIANTS[variant]
    check_composites(dataset, probed["projects"][variant], settings["resolution"]["stage2"],
                     settings["batch"]["stage2"])


def test_kohya_reads_the_anima_stages(probed: dict[str, Any]) -> None:
    """The Anima files reach anima_train_network.py's own arguments; both stages' datasets as the method has them."""
    config = probed["results"]["anima-stage2"]["config"]
    project = probed["projects"]["anima"]
    assert (config["qwen3"], config["vae"], config["t5_tokenizer_path"]) == tuple(
        str(project.model_files[key]) for key in ("text_encoder", "vae", "t5_tokenizer"))
    assert config["network_module"] == "networks.lora_anima"
    assert config["network_weights"].endswith("e2e-stage1.safetensors")
    for stage in ("stage1", "stage2"):
        (dataset,) = probed["results"][f"anima-{stage}"]["datasets"]
        size = VARIANTS["anima"]["resolution"][stage]
        assert dataset["resolution"] == [size, size] and dataset["batch_size"] == VARIANTS["anima"]["batch"][stage]
        assert all(subset["shuffle_caption"] is False for subset in dataset["subsets"])


def test_kohya_reads_the_joint_run_as_originals_then_composites(probed: dict[str, Any]) -> None:
    originals, composites = probed["results"]["joint-joint"]["datasets"]
    project = probed["projects"]["joint"]
    check_originals(originals, project, 640, 4, 3)
    check_composites(composites, project, 768, 2)


@pytest.mark.parametrize("job", RENDERED)
def test_sample_prompts_parse_with_sd_scripts_prompt_parser(probed: dict[str, Any], job: str) -> None:
    """Each character alone at the square bucket, each pair in both orders at the bucket its composites train in."""
    variant, stage = job.split("-")
    result = probed["results"][job]
    prompts, lines = result["prompts"], result["prompt_lines"]
    assert len(prompts) == len(lines) == len(NAMES) + len(PAIRS)
    dataset = result["datasets"][-1]  # the one that trains the composites (joint: the second)
    width, height = probed["composite_size"][variant]
    square, pair = tuple(dataset["select"]["512x512"]), tuple(dataset["select"][f"{width}x{height}"])
    assert square == (VARIANTS[variant]["resolution"][stage],) * 2
    if stage != "stage1":  # the composites themselves sit in that bucket
        assert {tuple(image["bucket"]) for image in dataset["images"].values()} == {pair}
    firsts = [f"{name}," for name in NAMES] + [f"{left}/{right}/COMPOSITE," for left, right in PAIRS]
    for prompt, line, first, size in zip(prompts, lines, firsts, [square] * len(NAMES) + [pair] * len(PAIRS),
                                         strict=True):
        assert prompt["prompt"] == line.split(" --")[0]
        assert prompt["prompt"].startswith(first), line
        assert (prompt["width"], prompt["height"]) == size, line
        assert prompt["negative_prompt"] == SAMPLES["negative"]
        assert (prompt["sample_steps"], prompt["scale"], prompt["seed"]) == (3, 5.5, 7)


@pytest.mark.parametrize("job", TEMPLATES)
def test_shipped_templates_are_valid_kohya_files(probed: dict[str, Any], job: str) -> None:
    """templates/ and templates/sdxl/ as they ship (dataset templates with their placeholder image_dir)."""
    result = probed["results"][job]
    assert (result["config_problems"], result["dataset_problems"]) == ([], [])


def test_kohya_args_table_matches_the_checkout(tmp_path: Path) -> None:
    """A submodule bump without re-running scripts/dump_kohya_args.py fails here."""
    out = tmp_path / "kohya_args.py"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "dump_kohya_args.py"), str(SD_SCRIPTS), str(out)],
                          capture_output=True, text=True, env=child_env(), timeout=600)
    assert done.returncode == 0, tail(done.stdout + done.stderr)
    committed = (REPO / "onetwo" / "kohya" / "args.py").read_text(encoding="utf-8")
    assert out.read_text(encoding="utf-8") == committed, (
        f"onetwo/kohya/args.py is stale for {SD_SCRIPTS}: run `.venv/bin/python scripts/dump_kohya_args.py "
        f"{SD_SCRIPTS}` and commit the result")
