"""issue 18 through the real CLI without torch: `onetwo synth` with the sampling launch replaced by a stand-in worker
that draws, for each prompt, a scene the test chose (evalkit's palette characters: alone, two figures, the other
character, a blend, a copy of a training image, a copy of an earlier drawing, nothing), judged by the real eval
code on the stand-in ONNX models in a huggingface cache, offline. Then stage 2's composites and plan table. The real
worker drawing with a stage-1 file of the tiny model: tests/test_e2e.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

pytest.importorskip("onnxruntime", reason="onetwo synth judges with eval's models: pip install 'onetwo[eval]'")
pytest.importorskip("onnx", reason="building the stand-in models needs onnx (in the dev extra)")

from tests import evalkit
from tests.model_files import LOHA_KEYS, SD1_KEYS, write_safetensors

NAMES = ["aoi", "midori"]
SIZE = 256


def drawn(kind: str) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), evalkit.BACKGROUND)
    if kind == "left":
        evalkit.draw_figure(image, SIZE * 5 / 16, SIZE / 4, evalkit.CHARACTERS["aoi"])
    elif kind == "right":  # with a patch of midori's hair colour, which the tagger reads as her orange_hair
        evalkit.draw_figure(image, SIZE * 11 / 16, SIZE / 4, evalkit.CHARACTERS["aoi"])
        ImageDraw.Draw(image).rectangle((SIZE * 5 // 8, SIZE // 2, SIZE * 3 // 4 - 1, SIZE * 5 // 8 - 1),
                                        fill=evalkit.CHARACTERS["midori"][1])
    elif kind == "pair":
        image = evalkit.scene(["aoi", "midori"], size=SIZE)
    elif kind == "other":
        evalkit.draw_figure(image, SIZE * 5 / 16, SIZE / 4, evalkit.CHARACTERS["midori"])
    elif kind == "blend":
        evalkit.draw_figure(image, SIZE * 5 / 16, SIZE / 4, evalkit.CHARACTERS["aoi"], evalkit.CHARACTERS["midori"])
    elif kind == "training":
        image = evalkit.scene(["aoi"], size=SIZE)
    return image


# prompt index → what the stand-in worker draws, and the reason the keep rule must give
PLAN = [("left", "KEPT"), ("right", "KEPT"), ("pair", "2 figures, not one"), ("other", "shows midori"),
        ("blend", "a blend"), ("training", "near-duplicate of training image"),
        ("left", "near-duplicate of kept drawing aoi/demo-stage1__p00__s"), ("empty", "no figure")]


def worker(launched: list[int]):
    def run(argv: list[str], log: Path) -> int:
        job = json.loads(Path(argv[-1]).read_text(encoding="utf-8"))
        for entry in job["files"]:
            for image in entry["images"]:
                drawn(PLAN[image["prompt_index"]][0]).save(image["png"])
                Path(image["sidecar_file"]).write_text(json.dumps(image["sidecar"]), encoding="utf-8")
                launched.append(image["prompt_index"])
        return 0

    return run


@pytest.fixture
def synth_project(make_project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, caption in evalkit.captions().items():
        if name in NAMES:
            folder = tmp_path / "data" / name
            folder.mkdir(parents=True)
            for index in range(2):
                evalkit.scene([name], size=SIZE + 64 * index).save(folder / f"{name}{index}.png")
                (folder / f"{name}{index}.txt").write_text(f"{caption}, {['standing', 'sitting'][index]}",
                                                           encoding="utf-8")
    write_safetensors(tmp_path / "model.safetensors", SD1_KEYS)
    (tmp_path / "out").mkdir()
    write_safetensors(tmp_path / "out" / "demo-stage1.safetensors", LOHA_KEYS)
    models = evalkit.write_models(tmp_path / "models")
    monkeypatch.setenv("HF_HUB_CACHE", str(evalkit.fake_hub_cache(tmp_path / "hub", models)))
    monkeypatch.setattr("onetwo.sample.run.launch_problems", lambda project, prepared: [])
    return make_project(NAMES, synthetic={"per_character": len(PLAN), "max_share": 0.34},
                        composite={"per_pair": 6}, project={"replay": 1.0})


def synthesise(cli, monkeypatch: pytest.MonkeyPatch, launched: list[int]) -> None:
    monkeypatch.setattr("onetwo.sample.run.run", worker(launched))
    code, _, err = cli("synth", "aoi", "--offline", "--width", str(SIZE), "--height", str(SIZE), "--no-progress")
    assert code == 0, err


def test_synth_keeps_what_eval_says_is_the_character_alone_and_stage2_deals_it(
        synth_project: Path, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    launched: list[int] = []
    monkeypatch.setattr("onetwo.sample.run.run", worker(launched))
    before = {path: path.stat().st_mtime_ns for path in (tmp_path / "data").rglob("*")}
    code, out, err = cli("synth", "aoi", "--offline", "--width", str(SIZE), "--height", str(SIZE), "--no-progress")
    assert code == 0, err
    assert sorted(launched) == list(range(len(PLAN)))
    synthetic = tmp_path / "work" / "synthetic"
    report = json.loads((synthetic / "report.json").read_text(encoding="utf-8"))
    assert list(report["characters"]) == ["aoi"]  # only the one named
    # the final file counts as the last epoch (the templates' max_train_epochs), as onetwo sample numbers it
    assert (report["characters"]["aoi"]["epoch_file"], report["characters"]["aoi"]["epoch"]) == (
        "demo-stage1.safetensors", 40)
    images = report["characters"]["aoi"]["images"]
    assert [image["prompt_index"] for image in images] == list(range(len(PLAN)))
    for image, (kind, reason) in zip(images, PLAN, strict=True):
        assert image["kept"] == (reason == "KEPT"), (kind, image)
        assert reason == "KEPT" or reason in image["reason"], (kind, image["reason"])
        caption = (synthetic / image["file"]).with_suffix(".txt")
        assert caption.is_file() == image["kept"]
        if image["kept"]:  # the token and the tagger's tags of the figure (not the prompt's smile), spelled as aoi's
            assert caption.read_text(encoding="utf-8") == image["caption"] == "aoi, 1girl, red dress, blue hair, hat"
            assert image["prompt"].startswith("aoi, 1girl, red dress, blue hair, hat, ") and "smile" in image["prompt"]
            assert image["caption_source"].startswith("tagger ")
            # midori's distinctive tags the tagger read off the patch on the second: left out, and said so
            assert image["dropped_tags"] == ([] if kind == "left" else ["orange_hair", "ponytail"])
    assert "synth: captions from the tagger " in err
    assert report["models"]["tagger"] == images[0]["caption_source"].removeprefix("tagger ")
    assert "aoi: 2 of 8 drawings kept" in out
    with Image.open(synthetic / "contact_sheet.png") as sheet:
        assert sheet.width > len(PLAN) * 128 and sheet.height >= 128
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "data").rglob("*")} == before

    # a rerun draws nothing, scores nothing and leaves the report as it was
    mtimes = {path: path.stat().st_mtime_ns for path in synthetic.rglob("*") if path.is_file()}
    launched.clear()
    code, out, err = cli("synth", "aoi", "--offline", "--width", str(SIZE), "--height", str(SIZE), "--no-progress")
    assert code == 0, err
    assert launched == [] and "already drawn" in err and "aoi: earlier decisions kept" in err
    assert {path: path.stat().st_mtime_ns for path in synthetic.rglob("*") if path.is_file()} == mtimes

    # --no-tags: the prompts' captions; the caption source is in the decision key, so it re-captions, drawing nothing
    code, out, err = cli("synth", "aoi", "--offline", "--no-tags", "--width", str(SIZE), "--height", str(SIZE),
                         "--no-progress")
    assert code == 0, err
    assert launched == [] and "synth: captions from the prompts (--no-tags)" in err
    assert "earlier decisions kept" not in err
    images = json.loads((synthetic / "report.json").read_text(encoding="utf-8"))["characters"]["aoi"]["images"]
    assert [image["kept"] for image in images] == [reason == "KEPT" for _, reason in PLAN]
    for image in filter(lambda image: image["kept"], images):
        text = (synthetic / image["file"]).with_suffix(".txt").read_text(encoding="utf-8")
        assert text == image["caption"] and image["caption_source"] == "prompt"
        assert text.startswith("aoi, 1girl, red dress, blue hair, hat, ") and text.endswith(", smile")
        assert "orange hair" not in text  # midori's distinctive tags never


def test_stage2_deals_the_kept_drawings_up_to_the_cap_and_stage1_never(
        synth_project: Path, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synthesise(cli, monkeypatch, [])
    synthetic = tmp_path / "work" / "synthetic"
    images = json.loads((synthetic / "report.json").read_text(encoding="utf-8"))["characters"]["aoi"]["images"]
    # the closest kept drawing joins aoi's deck (max_share 0.34 of 2 images: one), marked synthetic;
    # the other kept one (over the cap) and the rejected ones appear nowhere
    code, _, err = cli("render", "stage2", "--no-progress")
    assert code == 0, err
    manifest = json.loads((tmp_path / "work" / "composites.manifest.json").read_text(encoding="utf-8"))
    sources = [(source, flag) for entry in manifest["composites"].values()
               for source, flag in zip(entry["sources"], entry.get("synthetic", [False] * 2), strict=True)]
    used = {source for source, flag in sources if flag}
    assert used == {str(synthetic / images[0]["file"])}
    assert all(("synthetic" in source) == flag for source, flag in sources)
    aoi = [source for source, _ in sources if "/aoi" in source]
    assert len(aoi) == 6 and sum(source in used for source in aoi) == 2  # 2 of 6: a third, each image twice
    assert "synthetic                aoi 1 of 3 deck images, in 2 of 6 composites (33%); max_share 0.34" in err
    captions = [entry["caption"] for entry in manifest["composites"].values() if any(entry.get("synthetic", ()))]
    assert captions and all("red dress" in caption for caption in captions)
    _, out, _ = cli("check", "--no-progress")  # its plan tables show them too (whatever else it finds)
    assert "synthetic                aoi 1 of 3 deck images, in 2 of 6 composites (33%); max_share 0.34" in out
    # replay replays the deck: the character's images and the drawing that joined it
    replayed = sorted(path.name for path in (tmp_path / "work" / "replay" / "aoi").glob("*.png"))
    assert replayed == ["aoi0.png", "aoi1.png", f"synthetic__{images[0]['file'].replace('/', '__')}"]
    # stage 1 never trains on them
    code, _, err = cli("render", "stage1", "--no-progress")
    assert code == 0, err
    assert not any("synthetic" in str(path) for path in (tmp_path / "work" / "originals").rglob("*"))
    assert "synthetic " not in err
    # unless asked: [synthetic] stage1 = true puts the drawing that joined the deck in stage 1's folder too
    project_file = tmp_path / "onetwo.toml"
    project_file.write_text(project_file.read_text(encoding="utf-8").replace("[synthetic]\n",
                                                                            "[synthetic]\nstage1 = true\n"),
                            encoding="utf-8")
    code, _, err = cli("render", "stage1", "--no-progress")
    assert code == 0, err
    linked = sorted(path.name for path in (tmp_path / "work" / "originals" / "aoi").glob("*.png"))
    assert linked == ["aoi0.png", "aoi1.png", f"synthetic__{images[0]['file'].replace('/', '__')}"]
    assert (tmp_path / "work" / "originals" / "aoi" / linked[-1]).with_suffix(".txt").read_text(
        encoding="utf-8") == images[0]["caption"]




def test_without_the_tagger_in_the_cache_synth_captions_from_the_prompts(
        synth_project: Path, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.evalkit import fake_hub_cache, write_models

    cache = fake_hub_cache(tmp_path / "hub-no-tagger", write_models(tmp_path / "models2"), leave_out=("tagger",))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("onetwo.sample.run.run", worker([]))
    code, _, err = cli("synth", "aoi", "--offline", "--width", str(SIZE), "--height", str(SIZE), "--no-progress")
    assert code == 0, err
    assert "synth: captions from the prompts (no tagger available: " in err
    report = json.loads((tmp_path / "work" / "synthetic" / "report.json").read_text(encoding="utf-8"))
    kept = [image for image in report["characters"]["aoi"]["images"] if image["kept"]]
    assert len(kept) == 2 and report["models"]["tagger"] is None
    assert all(image["caption_source"] == "prompt" and image["caption"].endswith(", smile") for image in kept)


def test_synth_names_and_below_choose_the_characters(synth_project: Path) -> None:
    from onetwo.errors import OnetwoError
    from onetwo.project.file import load_project
    from onetwo.stages import scan
    from onetwo.synth.run import choose

    scans = scan(load_project(synth_project), progress=False)
    assert [item.character.name for item in choose(scans, [], 0)] == NAMES
    assert [item.character.name for item in choose(scans, [], 2)] == []
    assert [item.character.name for item in choose(scans, [], 3)] == NAMES
    assert [item.character.name for item in choose(scans, ["midori"], 3)] == ["midori"]
    with pytest.raises(OnetwoError, match="no character 'kiiro'; the project has aoi, midori"):
        choose(scans, ["kiiro"], 0)


def test_the_epoch_file_synth_draws_with(synth_project: Path, tmp_path: Path) -> None:
    from onetwo.errors import OnetwoError
    from onetwo.project.file import load_project
    from onetwo.synth.run import stage1_file

    project = load_project(synth_project)
    save = write_safetensors(tmp_path / "out" / "demo-stage1-000001.safetensors", LOHA_KEYS)
    assert stage1_file(project, "last") == project.lora_file("stage1")
    assert stage1_file(project, "1") == save
    with pytest.raises(OnetwoError, match="holds no stage-1 file of epoch 5"):
        stage1_file(project, "5")
    with pytest.raises(OnetwoError, match="give last, best or an epoch number"):
        stage1_file(project, "first")
    with pytest.raises(OnetwoError, match="no eval report of stage 1"):
        stage1_file(project, "best")
    project.lora_file("stage1").unlink()
    assert stage1_file(project, "last") == save  # no final file: the latest save
    save.unlink()
    with pytest.raises(OnetwoError, match="no stage-1 LoRA file"):
        stage1_file(project, "last")


def test_synth_refuses_joint_mode(make_project, cli) -> None:
    make_project(["alice", "bob"], project={"mode": "joint"})
    code, _, err = cli("synth", "--no-progress")
    assert code == 2 and "joint" in err and "needs sequential mode" in err


def test_synth_dry_run_says_what_it_would_draw_and_draws_nothing(synth_project: Path, cli, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    launched: list[int] = []
    monkeypatch.setattr("onetwo.sample.run.run", worker(launched))
    code, out, err = cli("synth", "--dry-run", "--no-progress")
    assert code == 0, err
    assert f"synth: {2 * len(PLAN)} of {2 * len(PLAN)} images to draw with demo-stage1.safetensors" in err
    assert "accelerate.commands.launch" in out and launched == []
    assert not (tmp_path / "work" / "synthetic" / "report.json").exists()
