"""`onetwo eval` through the real CLI: a project, its rendered sample prompts, sample images named as sd-scripts
names them, the stand-in models in a huggingface cache, `--offline`."""

from __future__ import annotations

import json
import re
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
            path.with_suffix(".txt").write_text(f"1girl, {name} outfit", encoding="utf-8")
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
    assert re.search(r"^aoi/midori +4 +50% .* swapped \(2\)$", out, re.MULTILINE)  # per prompt, both epochs
    assert "from the cache" in err

    code, _, err = cli("eval", "stage2", "--offline")
    assert code == 0 and f"{drawn} from the cache" in err


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
