"""`onetwo eval` through the real CLI: a project, its rendered sample prompts, sample images named as sd-scripts
names them, the stand-in models in a huggingface cache, `--offline`."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w
from PIL import Image

from onetwo.data.scan import scan_project
from onetwo.kohya.render import sample_prompt_groups
from onetwo.project.file import load_project
from tests.conftest import project_data

NAMES = ["aoi", "midori", "murasaki"]


pytest.importorskip("numpy", reason="onetwo eval needs numpy: pip install 'onetwo[eval]'")
pytest.importorskip("onnxruntime", reason="onetwo eval needs onnxruntime: pip install 'onetwo[eval]'")
pytest.importorskip("onnx", reason="building the stand-in models needs onnx (in the dev extra)")
pytest.importorskip("huggingface_hub", reason="onetwo eval needs huggingface_hub: pip install 'onetwo[eval]'")

from tests import evalkit  # noqa: E402


@pytest.fixture
def eval_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three characters drawn as the stand-in embedder knows them; the stand-in models in a hub cache."""
    for name, paths in evalkit.reference_images(tmp_path / "data", count=3).items():
        for path in paths:
            path.with_suffix(".txt").write_text(evalkit.captions()[name], encoding="utf-8")
    models = evalkit.write_models(tmp_path / "models")
    monkeypatch.setenv("HF_HUB_CACHE", str(evalkit.fake_hub_cache(tmp_path / "hub", models)))
    file = tmp_path / "onetwo.toml"
    file.write_text(tomli_w.dumps(project_data(NAMES, samples={"seeds": 2})), encoding="utf-8")
    return file


def draw_epoch(sample_dir: Path, epoch: int, groups: list[tuple[tuple[str, ...], str]], seeds: int,
               swap: bool) -> int:
    """One sample per prompt line, named as sd-scripts names them; pairs drawn in the wrong order if `swap`."""
    sample_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    for group_index, (names, _) in enumerate(groups):
        for offset in range(seeds):
            line = group_index * seeds + offset
            figures = tuple(reversed(names)) if swap and len(names) > 1 else names
            name = f"demo-stage2_e{epoch:06d}_{line:02d}_20260101120000_{1 + offset}.png"
            evalkit.scene(figures).save(sample_dir / name)
            count += 1
    return count


def test_eval_stage_writes_report_curves_and_sheet(eval_project: Path, cli: Callable, tmp_path: Path) -> None:
    assert cli("render", "stage2")[0] == 0
    project = load_project(eval_project)
    groups = sample_prompt_groups(project, scan_project(project))
    for epoch in (1, 2):  # the run that drew the samples below
        evalkit.write_epoch_file(project.output_dir / f"demo-stage2-{epoch:06d}.safetensors", epoch, time.time() - 60)
    drawn = draw_epoch(project.output_dir / "sample", 1, groups, 2, swap=True)
    drawn += draw_epoch(project.output_dir / "sample", 2, groups, 2, swap=False)
    Image.new("RGB", (64, 64)).save(project.output_dir / "sample" / "other-run_e000001_00_20260101120000_1.png")

    code, out, err = cli("eval", "stage2", "--offline")
    assert code == 0, err
    report = json.loads((project.work_dir / "eval" / "stage2" / "report.json").read_text(encoding="utf-8"))
    assert {"target", "source", "models", "threshold", "seam", "best_epoch", "totals", "epochs",
            "images"} <= set(report)
    assert report["models"]["detector"].startswith("deepghs/anime_person_detection/person_detect_v1.1_m")
    assert report["threshold"] == evalkit.THRESHOLD
    assert [epoch["epoch"] for epoch in report["epochs"]] == [1, 2]
    first, second = report["epochs"]
    assert first["groups"]["swapped"] == 12 and first["groups"]["correct"] == 0
    assert second["groups"]["correct"] == 12 and second["singles"]["correct"] == 6
    assert first["prompts"]["aoi/midori"]["groups"]["swapped"] == 2
    assert report["best_epoch"]["epoch"] == 2 and report["best_epoch"]["within_bounds"]
    assert len(report["images"]) == drawn
    assert report["seam"]["positives"] > 0 and report["seam"]["negatives"] > 0  # calibrated on the project
    assert {image["class"] for image in report["images"] if image["epoch"] == 2} == {"correct"}
    for name in ("curves.png", "contact_sheet.png"):
        with Image.open(project.work_dir / "eval" / "stage2" / name) as image:
            assert image.format == "PNG" and image.width > 300
    assert "2*" in out.replace(" ", "") and "best epoch: 2" in out
    assert re.search(r"^aoi/midori +4 +50% .* swapped \(2\)  \(0, 0\)$", out, re.MULTILINE)  # per prompt, both epochs
    assert "from the cache" in err

    code, _, err = cli("eval", "stage2", "--offline")
    assert code == 0 and f"{drawn} from the cache" in err
    assert "earlier runs" not in err


def age(paths, when: float) -> None:
    for path in paths:
        os.utime(path, (when, when))


def test_eval_scores_only_the_current_run(eval_project: Path, cli: Callable) -> None:
    """An earlier run of the stage left training-time samples (older than the current run's start), `onetwo sample`
    images of its epoch files, and one epoch file a shorter rerun did not overwrite: none of them mix in, unless
    --all-runs asks for them."""
    assert cli("render", "stage2")[0] == 0
    project = load_project(eval_project)
    groups = sample_prompt_groups(project, scan_project(project))
    out, drawn_dir = project.output_dir, project.work_dir / "samples" / "stage2"
    earlier, current = time.time() - 3600, time.time() - 600
    files = {epoch: out / f"demo-stage2-{epoch:06d}.safetensors" for epoch in (1, 2, 3)}
    for epoch, file in files.items():
        evalkit.write_epoch_file(file, epoch, earlier, salt=1)
    old_training = draw_epoch(out / "sample", 1, groups, 2, swap=True)
    age((out / "sample").glob("*.png"), earlier + 60)
    evalkit.write_sampled(drawn_dir, files[1], 1, 0, ("aoi", "midori"), 7, figures=("midori", "aoi"))
    evalkit.write_sampled(drawn_dir, files[3], 3, 0, ("aoi", "midori"), 7, figures=("midori", "aoi"))

    final = out / "demo-stage2.safetensors"  # the rerun: two epochs, the last saved as the final file
    evalkit.write_epoch_file(files[1], 1, current, salt=2)
    evalkit.write_epoch_file(final, 2, current, salt=2)
    files[2].unlink()
    new_training = draw_epoch(out / "sample", 2, groups, 2, swap=False)
    for file, epoch in ((files[1], 1), (final, 2)):
        for seed in (1, 2):
            evalkit.write_sampled(drawn_dir, file, epoch, 0, ("aoi", "midori"), seed)
            evalkit.write_sampled(drawn_dir, file, epoch, 1, ("midori",), seed)

    code, _, err = cli("eval", "stage2", "--offline")
    assert code == 0, err
    report = json.loads((project.work_dir / "eval" / "stage2" / "report.json").read_text(encoding="utf-8"))
    images = report["images"]
    assert len(images) == new_training + 8
    assert {image["class"] for image in images} == {"correct"}  # every swapped picture was an earlier run's
    assert sorted({image["source"] for image in images}) == ["sample", "training"]
    assert [epoch["epoch"] for epoch in report["epochs"]] == [1, 2]
    assert report["run"]["earlier_runs"] == {"training": old_training, "sample": 2, "included": False}
    assert sorted(item["file"] for item in report["run"]["epoch_files"]) == ["demo-stage2-000001.safetensors",
                                                                           "demo-stage2.safetensors"]
    assert report["run"]["started_at"] == pytest.approx(current)
    assert f"{old_training + 2} sample(s) of earlier runs of stage2 left out (--all-runs includes them)" in err

    code, _, err = cli("eval", "stage2", "--offline", "--all-runs")
    assert code == 0, err
    report = json.loads((project.work_dir / "eval" / "stage2" / "report.json").read_text(encoding="utf-8"))
    assert len(report["images"]) == new_training + 8 + old_training + 2
    assert [epoch["epoch"] for epoch in report["epochs"]] == [1, 2, 3]
    assert report["totals"]["groups"]["swapped"] == 12 + 2
    assert "included (--all-runs)" in err


def test_eval_without_epoch_files_asks_for_all_runs(eval_project: Path, cli: Callable) -> None:
    assert cli("render", "stage2")[0] == 0
    project = load_project(eval_project)
    draw_epoch(project.output_dir / "sample", 1, sample_prompt_groups(project, scan_project(project)), 2, swap=False)
    code, _, err = cli("eval", "stage2", "--offline")
    assert code == 2 and "no epoch files of demo-stage2" in err and "--all-runs" in err
    code, _, err = cli("eval", "stage2", "--offline", "--all-runs")
    assert code == 0, err


def test_eval_folder_of_images_from_another_tool(eval_project: Path, cli: Callable, tmp_path: Path) -> None:
    folder = tmp_path / "comfy"
    folder.mkdir()
    evalkit.scene(["aoi", "midori"]).save(folder / "ComfyUI_00001_.png")
    evalkit.scene(["aoi", "aoi"]).save(folder / "ComfyUI_00002_.png")
    evalkit.scene(["murasaki"]).save(folder / "single_00001.png")
    (folder / "prompts.toml").write_text(tomli_w.dumps({"prompts": [
        {"characters": ["aoi", "midori"], "images": "ComfyUI_*.png"},
        {"characters": ["murasaki"], "images": ["single_*.png"]},
    ]}), encoding="utf-8")
    code, _, err = cli("eval", str(folder), "--offline", "--seam-threshold", "0.05")
    assert code == 0, err
    report = json.loads((tmp_path / "work" / "eval" / "comfy" / "report.json").read_text(encoding="utf-8"))
    assert report["totals"]["groups"] == {"correct": 1, "swapped": 0, "clone": 1, "blend": 0, "missing": 0,
                                          "extra": 0, "wrong_character": 0}
    assert report["totals"]["singles"]["correct"] == 1 and report["seam"]["source"] == "--seam-threshold"


def test_eval_errors_name_the_fix(eval_project: Path, cli: Callable, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = cli("eval", "stage2", "--offline")
    assert code == 2 and "sample_prompts.txt" in err and "onetwo render" in err
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "prompts.toml").write_text('[[prompts]]\ncharacters = ["nobody"]\nimages = "*.png"\n', encoding="utf-8")
    code, _, err = cli("eval", str(folder), "--offline")
    assert code == 2 and "prompts[0].characters" in err and "aoi, midori, murasaki" in err
    (folder / "prompts.toml").write_text('[[prompts]]\ncharacters = ["aoi"]\nimages = "*.png"\n', encoding="utf-8")
    evalkit.scene(["aoi"]).save(folder / "a.png")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    code, _, err = cli("eval", str(folder), "--offline")
    assert code == 2 and "deepghs/anime_person_detection: person_detect_v1.1_m/model.onnx" in err


def test_compare_two_runs_at_their_best_epochs(eval_project: Path, cli: Callable, tmp_path: Path) -> None:
    """Run A draws every pair right; run B swaps half its pairs: pair success differs beyond the intervals, the
    rest do not; a run against a copy of itself is not told apart at all."""
    assert cli("render", "stage2")[0] == 0
    project = load_project(eval_project)
    groups = sample_prompt_groups(project, scan_project(project))
    sample_dir = project.output_dir / "sample"
    evalkit.write_epoch_file(project.output_dir / "demo-stage2-000001.safetensors", 1, time.time() - 60)
    draw_epoch(sample_dir, 1, groups, 2, swap=False)
    assert cli("eval", "stage2", "--offline")[0] == 0  # run A: the work dir's eval/stage2/report.json
    pairs = [path for path in sorted(sample_dir.glob("*.png")) if len(groups[int(path.name.split("_")[2]) // 2][0]) > 1]
    for path in pairs[::2]:
        names = groups[int(path.name.split("_")[2]) // 2][0]
        evalkit.scene(tuple(reversed(names))).save(path)
    assert cli("eval", "stage2", "--offline", "--out", str(tmp_path / "run-b"))[0] == 0

    code, out, err = cli("eval", "--compare", str(project.work_dir), str(tmp_path / "run-b" / "report.json"))
    assert code == 0, err
    assert re.search(r"^A +1 +18 +100% \[76%-100%\] +0% \[0%-24%\] ", out, re.MULTILINE)  # best epoch 1, 12/12
    assert re.search(r"^B +1 +18 +50% \[25%-75%\] ", out, re.MULTILINE)  # 6 of 12
    assert f"A: {project.work_dir / 'eval' / 'stage2' / 'report.json'}" in out
    assert f"B: {tmp_path / 'run-b' / 'report.json'}" in out
    assert ("A and B: the 95 % intervals of clone, blend, leak, single accuracy overlap (not told apart by this "
            "many samples: draw more seeds); pair success differs beyond them.") in out

    shutil.copytree(tmp_path / "run-b", tmp_path / "run-b-again")
    code, out, _ = cli("eval", "stage2", "--compare", str(tmp_path / "run-b"), str(tmp_path / "run-b-again"))
    assert code == 0 and "every 95 % interval overlaps" in out and "draw more seeds" in out

    code, _, err = cli("eval", "--compare", str(tmp_path / "run-b"))
    assert code == 2 and "two or more runs" in err
    code, _, err = cli("eval", "--compare", str(tmp_path / "run-b"), str(tmp_path / "nowhere"))
    assert code == 2 and "no eval report there" in err and "onetwo eval stage2" in err


def test_eval_reports_trait_swaps_and_merged_figures_per_pair_and_epoch(eval_project: Path, cli: Callable,
                                                                        tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("render", "stage2")[0] == 0
    project = load_project(eval_project)
    groups = sample_prompt_groups(project, scan_project(project))
    sample_dir = project.output_dir / "sample"
    evalkit.write_epoch_file(project.output_dir / "demo-stage2-000001.safetensors", 1, time.time() - 60)
    draw_epoch(sample_dir, 1, groups, 2, swap=False)
    line = next(index for index, (names, _) in enumerate(groups) if names == ("aoi", "midori")) * 2
    first, second = sorted(sample_dir.glob(f"demo-stage2_e000001_{line:02d}_*.png")) + sorted(
        sample_dir.glob(f"demo-stage2_e000001_{line + 1:02d}_*.png"))
    evalkit.scene([("aoi", "midori", "head"), "midori"]).save(first)  # aoi wears midori's hair: a trait swap
    evalkit.scene(["aoi", ("aoi", "midori")]).save(second)  # half aoi, half midori: merged

    code, out, err = cli("eval", "stage2", "--offline")
    assert code == 0, err
    report = json.loads((project.work_dir / "eval" / "stage2" / "report.json").read_text(encoding="utf-8"))
    assert report["models"]["tagger"].startswith("SmilingWolf/wd-swinv2-tagger-v3")
    assert report["distinctive_tags"]["midori"] == ["green dress", "orange hair", "ponytail"]
    (epoch,) = report["epochs"]
    assert epoch["hints"] == {"trait_swap": 1, "merged": 1}
    assert epoch["prompts"]["aoi/midori"]["hints"] == {"trait_swap": 1, "merged": 1}
    assert epoch["rates"]["trait_swap"]["total"] == 12
    swapped = next(image for image in report["images"] if image["file"].endswith(first.name))
    assert [figure["hint"] for figure in swapped["figures"]] == ["trait_swap", None]
    assert "orange_hair" in swapped["figures"][0]["tags"] and swapped["class"] == "correct"
    assert "trait swap merged" in " ".join(out.split()) and re.search(r"^aoi/midori .* \(1, 1\)$", out, re.MULTILINE)

    code, out, err = cli("eval", "stage2", "--offline", "--no-tags", "--out", str(tmp_path / "untagged"))
    assert code == 0, err
    untagged = json.loads((tmp_path / "untagged" / "report.json").read_text(encoding="utf-8"))
    assert untagged["models"]["tagger"] is None and untagged["epochs"][0]["hints"] == {"trait_swap": 0, "merged": 0}
    assert "trait swap" not in out

    models = evalkit.write_models(tmp_path / "models-again")
    monkeypatch.setenv("HF_HUB_CACHE", str(evalkit.fake_hub_cache(tmp_path / "no-tagger", models,
                                                                   leave_out=("tagger", "tags"))))
    code, _, err = cli("eval", "stage2", "--offline")
    assert code == 2 and "--no-tags scores without the tagger" in err
    assert "SmilingWolf/wd-swinv2-tagger-v3: selected_tags.csv" in err
    assert cli("eval", "stage2", "--offline", "--no-tags")[0] == 0
