"""issue 16 §1: `onetwo sample STAGE`, the parts that need no torch: prompt lines read as sd-scripts reads them, epoch
files and `--epochs`, seeds, image names and sidecars as agreed with `onetwo eval`, what a rerun skips; and the real
CLI with the launch replaced by a stand-in worker that writes what the job asks (the real worker runs in
tests/test_e2e.py)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from onetwo.data.captions import sample_prompt_line
from onetwo.errors import OnetwoError
from onetwo.eval.samples import prompt_lines
from onetwo.kohya.families import FAMILIES
from onetwo.kohya.hashes import compute
from onetwo.project.config import REPO_ROOT
from onetwo.sample import plan
from onetwo.sample.plan import EpochFile, Options, PromptLine
from tests.model_files import LOHA_KEYS, SD1_KEYS, write_safetensors
from tests.test_matrix import stand_in_worker

PROMPTS = ("# a comment line kohya skips\n\n"
           + sample_prompt_line("alice, 1girl", "lowres", 512, 512, 28, 7.0, 1) + "\n"
           + sample_prompt_line("alice, 1girl", "lowres", 512, 512, 28, 7.0, 2) + "\n"  # [samples] seeds = 2
           + sample_prompt_line("alice/bob/COMPOSITE, 2girls (smile)", "", 1021, 768, 20, 5.5, 1) + "\n")


def files(tmp_path: Path) -> list[EpochFile]:
    return [EpochFile(tmp_path / "demo-stage1-000001.safetensors", 1, "a" * 64),
            EpochFile(tmp_path / "demo-stage1.safetensors", 2, "b" * 64)]


def test_prompt_lines_are_numbered_and_read_as_sd_scripts_and_eval_read_them(tmp_path: Path) -> None:
    lines = plan.parse_prompt_lines(PROMPTS)
    (tmp_path / "p.txt").write_text(PROMPTS, encoding="utf-8")
    assert [line.prompt for line in lines] == prompt_lines(tmp_path / "p.txt")
    assert [line.index for line in lines] == [0, 1, 2]
    pair = lines[2]
    assert (pair.negative, pair.width, pair.height, pair.steps, pair.scale, pair.seed) == ("", 1016, 768, 20, 5.5, 1)
    assert pair.prompt == "alice/bob/COMPOSITE, 2girls \\(smile\\)"  # escaped, as the sampler reads it
    assert (lines[0].negative, lines[0].seed, lines[1].seed) == ("lowres", 1, 2)
    assert [line.index for line in plan.distinct_prompts(lines)] == [0, 2]  # seeds come from --seeds instead
    assert plan.parse_prompt_lines("just a prompt")[0] == PromptLine(0, "just a prompt", "", 512, 512, 30, 7.5, None)


def test_epoch_numbers_and_the_epochs_option(tmp_path: Path) -> None:
    assert plan.epoch_number(Path("demo-stage1-000007.safetensors"), "demo-stage1", 40) == 7
    assert plan.epoch_number(Path("demo-stage1.safetensors"), "demo-stage1", 40) == 40  # the final file
    found = files(tmp_path)
    assert plan.select_epochs(found[::-1], "all", "out") == found
    assert plan.select_epochs(found, "last", "out") == found[1:]
    assert plan.select_epochs(found, "2,1", "out") == found
    with pytest.raises(OnetwoError, match=r"no file of epoch 3 in out; there are epochs 1, 2"):
        plan.select_epochs(found, "1,3", "out")
    with pytest.raises(OnetwoError, match="give all, last, or epoch numbers"):
        plan.select_epochs(found, "best", "out")
    with pytest.raises(OnetwoError, match="train it first"):
        plan.select_epochs([], "all", "out")


def test_every_file_prompt_and_seed_gets_a_name_and_a_sidecar(tmp_path: Path) -> None:
    lines = plan.distinct_prompts(plan.parse_prompt_lines(PROMPTS))
    characters = {0: ("alice",), 2: ("alice", "bob")}
    planned = plan.plan_images(files(tmp_path), lines, characters, Options(seeds=3), "k_euler_a", 2, "model.ckpt", 1)
    assert len(planned) == 2 * 2 * 3
    assert [item.stem for item in planned[:3]] == [f"demo-stage1-000001__p00__s{seed}" for seed in (1, 2, 3)]
    last = planned[-1]
    assert last.stem == "demo-stage1__p02__s3" and last.png(tmp_path) == tmp_path / "demo-stage1__p02__s3.png"
    assert last.record == {
        "lora_file": "demo-stage1.safetensors", "sshs_model_hash": "b" * 64, "epoch": 2, "prompt_index": 2,
        "prompt": "alice/bob/COMPOSITE, 2girls \\(smile\\)", "negative_prompt": "", "characters": ["alice", "bob"],
        "seed": 3, "settings": {"sampler": "k_euler_a", "steps": 20, "scale": 5.5, "width": 1016, "height": 768,
                                "clip_skip": 2, "strength": 1.0, "base_model": "model.ckpt"}}
    overridden = plan.plan_images(files(tmp_path)[:1], lines, characters,
                                  Options(seeds=1, strength=0.6, steps=1, width=64, height=70, scale=3, sampler="ddim"),
                                  "k_euler_a", 2, "model.ckpt", 1)
    assert {json.dumps(item.record["settings"], sort_keys=True) for item in overridden} == {json.dumps(
        {"sampler": "ddim", "steps": 1, "scale": 3, "width": 64, "height": 64, "clip_skip": 2, "strength": 0.6,
         "base_model": "model.ckpt"}, sort_keys=True)}


def test_an_image_counts_as_drawn_only_with_a_sidecar_saying_the_same(tmp_path: Path) -> None:
    lines = plan.distinct_prompts(plan.parse_prompt_lines(PROMPTS))
    planned = plan.plan_images(files(tmp_path), lines, {}, Options(seeds=1), "k_euler_a", 2, "m", 1)
    first = planned[0]
    assert plan.pending(planned, tmp_path) == planned
    first.png(tmp_path).write_bytes(b"png")
    assert first in plan.pending(planned, tmp_path)  # no sidecar yet: the worker died between the two
    first.sidecar(tmp_path).write_text(json.dumps(first.record), encoding="utf-8")
    assert first not in plan.pending(planned, tmp_path)
    for key, value in (("sshs_model_hash", "c" * 64), ("seed", 9), ("prompt", "other"),
                       ("settings", {**first.record["settings"], "steps": 2})):
        first.sidecar(tmp_path).write_text(json.dumps({**first.record, key: value}), encoding="utf-8")
        assert first in plan.pending(planned, tmp_path), key
    first.sidecar(tmp_path).write_text("{half a file", encoding="utf-8")
    assert first in plan.pending(planned, tmp_path)


# ---- through the real CLI, the launch replaced by a stand-in worker -------------------------------------------


@pytest.fixture
def trained_project(make_project, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stage 1 rendered, two epoch files in the output folder, a stand-in checkout and base model."""
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "train_network.py").write_text("", encoding="utf-8")
    write_safetensors(tmp_path / "model.safetensors", SD1_KEYS)
    make_project(["alice", "bob", "cara"], project={"sd_scripts": "sd"}, training={"max_train_epochs": 2})
    assert cli("render", "stage1", "--no-progress")[0] == 0
    (tmp_path / "out").mkdir()
    for name in ("demo-stage1-000001", "demo-stage1"):
        write_safetensors(tmp_path / "out" / f"{name}.safetensors", LOHA_KEYS)
    monkeypatch.setattr("onetwo.sample.run.launch_problems", lambda project, prepared: [])
    return tmp_path


def test_sample_draws_every_file_prompt_and_seed_once(trained_project: Path, cli,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path = trained_project
    launched: list[list[str]] = []
    monkeypatch.setattr("onetwo.sample.run.run", stand_in_worker(launched))
    code, _, err = cli("sample", "stage1", "--seeds", "2", "--steps", "1", "--width", "64", "--height", "64",
                       "--no-progress")
    assert code == 0, err
    out_dir = tmp_path / "work" / "samples" / "stage1"
    prompts = 3 + 6  # each character alone, each ordered pair
    sidecars = sorted(out_dir.glob("*.json"))
    assert len(launched) == 1 and len(sidecars) == len(list(out_dir.glob("*.png"))) == 2 * prompts * 2
    job = json.loads(Path(launched[0][-1]).read_text(encoding="utf-8"))
    sd1 = FAMILIES["sd1"]
    assert (job["trainer_class"], job["sample_pipeline"], job["pipeline_lists"], job["lora_prefixes"]) == (
        sd1.trainer_class, sd1.sample_pipeline, sd1.pipeline_lists, list(sd1.lora_prefixes))
    assert [Path(entry["path"]).name for entry in job["files"]] == ["demo-stage1-000001.safetensors",
                                                                     "demo-stage1.safetensors"]
    assert launched[0][launched[0].index("accelerate.commands.launch") + 1:][-2:] == [
        str(Path(plan.__file__).with_name("worker.py")), str(tmp_path / "work" / "stage1" / "sampling" / "job.json")]
    records = {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sidecars}
    final = records["demo-stage1__p03__s2"]
    assert final["epoch"] == 2 and final["lora_file"] == "demo-stage1.safetensors"
    assert final["sshs_model_hash"] == compute(tmp_path / "out" / "demo-stage1.safetensors")[0]
    assert final["characters"] == ["alice", "bob"] and final["prompt"].startswith("alice/bob/COMPOSITE, ")
    assert final["settings"]["steps"] == 1 and final["settings"]["sampler"] == "k_euler_a"
    assert final["settings"]["base_model"] == "model.safetensors" and final["settings"]["clip_skip"] == 2
    assert records["demo-stage1-000001__p00__s1"]["epoch"] == 1
    assert {record["prompt_index"] for record in records.values()} == set(range(prompts))
    assert f"drew 36 images → {out_dir}" in err

    code, _, err = cli("sample", "stage1", "--seeds", "2", "--steps", "1", "--width", "64", "--height", "64",
                       "--no-progress")
    assert code == 0 and len(launched) == 1, err  # nothing new: no launch, no model load
    assert "all 36 images already drawn" in err

    code, _, err = cli("sample", "stage1", "--seeds", "3", "--epochs", "last", "--steps", "1", "--width", "64",
                       "--height", "64", "--no-progress")
    assert code == 0 and len(launched) == 2, err
    job = json.loads(Path(launched[1][-1]).read_text(encoding="utf-8"))
    drawn = [Path(image["png"]).stem for entry in job["files"] for image in entry["images"]]
    assert drawn == [f"demo-stage1__p{index:02d}__s3" for index in range(prompts)]  # only the new seed


def test_sample_dry_run_and_its_refusals(trained_project: Path, cli) -> None:
    code, out, err = cli("sample", "stage1", "--dry-run", "--no-progress")
    assert code == 0, err
    assert "72 of 72 images to draw" in err  # 2 files x 9 prompts x the default 4 seeds
    assert shlex.split(out)[-1].endswith("job.json")
    assert not (trained_project / "work" / "samples").exists()
    code, _, err = cli("sample", "stage1", "--epochs", "5", "--no-progress")
    assert code == 2 and "no file of epoch 5" in err and "there are epochs 1, 2" in err
    code, _, err = cli("sample", "stage2", "--no-progress")
    assert code == 2 and "onetwo render stage2" in err


def test_a_family_the_sampler_cannot_draw_is_refused_naming_the_model(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace
    from types import SimpleNamespace

    from onetwo.sample.run import sampling_run
    # every declared family is drawn today: a family declared without sampling stands in for a later one
    monkeypatch.setitem(FAMILIES, "later", replace(FAMILIES["anima"], name="later", label="Later", sampled=False))
    project = SimpleNamespace(model="later", file=tmp_path / "onetwo.toml")
    with pytest.raises(OnetwoError) as error:
        sampling_run(project, None, [], tmp_path / "out", tmp_path / "job", None, False)  # type: ignore[arg-type]
    assert "'later'" in str(error.value) and "onetwo eval" in str(error.value)
    assert "SD1 and SDXL and Anima models only" in str(error.value)
    assert not (tmp_path / "out").exists()


WORKER_SOURCE = (REPO_ROOT / "onetwo" / "sample" / "worker.py").read_text(encoding="utf-8")
SD_SCRIPTS = REPO_ROOT / "third_party" / "sd-scripts"


def test_the_worker_names_no_family_and_reads_the_familys_fields_from_the_job() -> None:
    """The worker runs without onetwo: what differs between families comes in the job, not from branches."""
    from onetwo.sample.run import family_job

    for family in FAMILIES.values():
        for word in {family.name, family.label}:
            assert not re.search(rf"\b{re.escape(word)}\b", WORKER_SOURCE, re.IGNORECASE), word
    for key in family_job(FAMILIES["sd1"]):
        assert f'job["{key}"]' in WORKER_SOURCE, key


@pytest.mark.parametrize("name", [name for name, family in FAMILIES.items() if family.sampled])
def test_each_sampled_familys_job_fields_name_what_the_checkout_has(name: str) -> None:
    """The trainer class is defined in the family's trainer script, the pipeline class in its module, and the LoRA
    prefixes start with the UNet's, then the text encoders'."""
    from onetwo.sample.run import family_job

    if not (SD_SCRIPTS / "library").is_dir():
        pytest.skip("the sd-scripts submodule is not checked out (git submodule update --init)")
    family = FAMILIES[name]
    job = family_job(family)
    trainer = (SD_SCRIPTS / family.train_script).read_text(encoding="utf-8")
    assert re.search(rf"^class {job['trainer_class']}\b", trainer, re.MULTILINE)
    # a pipeline class, or for a trainer without one (Anima) the per-prompt sampling function
    assert bool(job["sample_pipeline"]) != bool(job["sample_function"])
    module, _, name = (job["sample_pipeline"] or job["sample_function"]).partition(":")
    source = (SD_SCRIPTS / Path(*module.split("."))).with_suffix(".py").read_text(encoding="utf-8")
    kind = "class" if job["sample_pipeline"] else "def"
    assert re.search(rf"^{kind} {name}\b", source, re.MULTILINE)
    assert job["lora_prefixes"][0] == "lora_unet" and len(set(job["lora_prefixes"])) == len(job["lora_prefixes"]) > 1


# The loaders behind a family's skip_random_init: each model they build is then loaded strictly.
STRICT_LOADERS = {"sd1": (("library/model_util.py", "load_models_from_stable_diffusion_checkpoint"),
                          ("library/model_util.py", "load_vae"), ("library/train_util.py", "_load_target_model"))}


def test_the_random_init_is_skipped_only_where_the_checkout_loads_every_weight_strictly() -> None:
    """The worker leaves the constructors' random fills out for such a family: a non-strict load would then leave
    unfilled memory where sd-scripts leaves random weights. At the pinned checkout every load_state_dict of those
    loaders is strict; a submodule bump that changes that fails here."""
    if not (SD_SCRIPTS / "library").is_dir():
        pytest.skip("the sd-scripts submodule is not checked out (git submodule update --init)")
    assert {name for name, family in FAMILIES.items() if family.skip_random_init} == set(STRICT_LOADERS)
    for name, loaders in STRICT_LOADERS.items():
        for file, function in loaders:
            source = (SD_SCRIPTS / file).read_text(encoding="utf-8")
            body = re.search(rf"^def {function}\(.*?(?=^def |\Z)", source, re.DOTALL | re.MULTILINE)
            assert body, (name, file, function)
            loads = re.findall(r"\.load_state_dict\(([^()]*(?:\([^()]*\)[^()]*)*)\)", body.group(0))
            assert loads and not any("strict" in arguments or "assign" in arguments for arguments in loads), (
                name, function, loads)
