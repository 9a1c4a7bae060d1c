"""issue 17 §2: Anima as a family: its files told apart from their headers, its slots in the project file and in
`init`, its templates rendered with the files filled in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onetwo.data.scan import scan_project
from onetwo.errors import OnetwoError
from onetwo.kohya.base_model import classify, model_file_problems
from onetwo.kohya.render import load_templates, parse_set, render_stage
from onetwo.project.file import load_project
from tests.model_files import (
    ANIMA_ADAPTER_KEYS,
    ANIMA_DIT_KEYS,
    QWEN3_KEYS,
    QWEN_VAE_DIFFUSERS,
    QWEN_VAE_KEYS,
    SDXL_KEYS,
    VAE_KEYS,
    write_anima_files,
    write_safetensors,
)
from tests.venvs import bare_venv


@pytest.mark.parametrize(("keys", "shapes", "kind", "detail"), [
    (ANIMA_DIT_KEYS + ANIMA_ADAPTER_KEYS, None, "anima_dit", "an Anima DiT (2 blocks, LLM adapter inside)"),
    ([f"net.{key}" for key in ANIMA_DIT_KEYS + ANIMA_ADAPTER_KEYS], None, "anima_dit",
     "an Anima DiT (2 blocks with ComfyUI's net. prefix, LLM adapter inside)"),
    (ANIMA_DIT_KEYS, None, "anima_dit", "an Anima DiT (2 blocks, LLM adapter not inside)"),
    (QWEN3_KEYS, None, "qwen3", "a Qwen3 text encoder (1 layers)"),
    ([key.removeprefix("model.") for key in QWEN3_KEYS], None, "qwen3", "a Qwen3 text encoder (1 layers)"),
    (QWEN_VAE_KEYS, None, "qwen_image_vae", "a Qwen-Image VAE (3-D causal convolutions)"),
    (list(QWEN_VAE_DIFFUSERS), QWEN_VAE_DIFFUSERS, "qwen_image_vae", "a Qwen-Image VAE (3-D causal convolutions)"),
    (VAE_KEYS, None, "vae", "a VAE alone"),  # an SD VAE stays one
    (SDXL_KEYS, None, "sdxl", "an SDXL checkpoint (conditioner.embedders.* text encoder keys)"),
])
def test_the_anima_files_by_their_headers(tmp_path: Path, keys: list[str], shapes, kind: str, detail: str) -> None:
    found = classify(write_safetensors(tmp_path / "file.safetensors", keys, shapes))
    assert (found.kind, found.detail) == (kind, detail)


def test_folders_a_qwen3_model_and_a_t5_tokenizer(tmp_path: Path) -> None:
    (tmp_path / "qwen3").mkdir()
    (tmp_path / "qwen3" / "config.json").write_text(json.dumps({"model_type": "qwen3"}), encoding="utf-8")
    assert classify(tmp_path / "qwen3").kind == "qwen3"
    assert classify(write_anima_files(tmp_path / "files")["t5_tokenizer"]).kind == "t5_tokenizer"
    (tmp_path / "other").mkdir()
    assert classify(tmp_path / "other").kind == "not_a_model"


def anima_project(make_project, tmp_path: Path, **project: str):
    files = write_anima_files(tmp_path / "models")
    settings = {"model": "anima", "base_model": str(files["base_model"]), "text_encoder": str(files["text_encoder"]),
                "vae": str(files["vae"]), **project}
    return make_project(project=settings), files


def test_anima_needs_its_text_encoder_and_vae(make_project) -> None:
    with pytest.raises(OnetwoError) as caught:
        load_project(make_project(project={"model": "anima"}))
    problems = "\n".join(caught.value.problems)
    assert "project.text_encoder: missing: project.model = 'anima' needs the Qwen3-0.6B text encoder " \
           "(anima_train_network.py --qwen3)" in problems
    assert "project.vae: missing: project.model = 'anima' needs the Qwen-Image VAE" in problems


def test_another_familys_slot_is_refused(make_project) -> None:
    with pytest.raises(OnetwoError) as caught:
        load_project(make_project(project={"text_encoder": "qwen3.safetensors"}))
    assert "project.text_encoder: is the Qwen3-0.6B text encoder, a file of project.model = 'anima', not of 'sd1'" \
           in "\n".join(caught.value.problems)


@pytest.mark.parametrize("stage", ["stage1", "stage2", "joint"])
def test_the_templates_render_with_the_files_filled_in(make_project, tmp_path: Path, stage: str) -> None:
    file, files = anima_project(make_project, tmp_path, t5_tokenizer="models/t5",
                                mode="joint" if stage == "joint" else "sequential")
    project = load_project(file)
    rendered = render_stage(project, stage, scan_project(project), load_templates(project, stage), parse_set([]),
                            project.lora_file("stage1") if stage == "stage2" else None)
    flat = rendered.flat_config()
    assert project.train_script.name == "anima_train_network.py"
    assert (flat["pretrained_model_name_or_path"], flat["qwen3"], flat["vae"], flat["t5_tokenizer_path"]) == \
           tuple(str(files[key]) for key in ("base_model", "text_encoder", "vae", "t5_tokenizer"))
    assert rendered.config["model_arguments"]["qwen3"] == str(files["text_encoder"])
    assert flat["network_module"] == "networks.lora_anima" and "xformers" not in flat
    datasets = rendered.dataset["datasets"]
    assert all(subset["shuffle_caption"] is False for dataset in datasets for subset in dataset["subsets"])


def test_stage2_is_at_a_higher_resolution_and_a_smaller_batch(make_project, tmp_path: Path) -> None:
    project = load_project(anima_project(make_project, tmp_path)[0])
    one, two = (load_templates(project, stage).dataset["datasets"][0] for stage in ("stage1", "stage2"))
    assert two["resolution"] > one["resolution"] and two["batch_size"] < one["batch_size"]


def test_a_wrong_file_in_a_slot_names_the_slot_and_the_file(tmp_path: Path) -> None:
    files = write_anima_files(tmp_path)
    wrong = {"text_encoder": files["vae"], "vae": write_safetensors(tmp_path / "sd-vae.safetensors", VAE_KEYS),
             "t5_tokenizer": files["text_encoder"]}
    problems, notes = model_file_problems("anima", wrong)
    assert problems == [
        f"{files['vae']}: project.text_encoder is a Qwen-Image VAE (3-D causal convolutions), not the Qwen3-0.6B "
        "text encoder; point it at the Qwen3-0.6B text encoder",
        f"{tmp_path / 'sd-vae.safetensors'}: project.vae is a VAE alone, not the Qwen-Image VAE; point it at the "
        "Qwen-Image VAE",
        f"{files['text_encoder']}: project.t5_tokenizer is a Qwen3 text encoder (1 layers), not the T5 tokenizer; "
        "point it at the T5 tokenizer"]
    assert notes == []
    good = model_file_problems("anima", {key: files[key] for key in ("text_encoder", "vae", "t5_tokenizer")})
    assert good == ([], ["text_encoder: a Qwen3 text encoder (1 layers)",
                         "vae: a Qwen-Image VAE (3-D causal convolutions)", "t5_tokenizer: a T5 tokenizer folder"])
    assert model_file_problems("anima", {"vae": tmp_path / "gone.safetensors"})[0] == [
        f"{tmp_path / 'gone.safetensors'}: project.vae (the Qwen-Image VAE) not found; check the path"]


@pytest.fixture(scope="module")
def quick_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bare_venv(tmp_path_factory.mktemp("bare") / "venv")


def test_check_on_an_anima_project(make_project, cli, tmp_path: Path, quick_python: Path) -> None:
    anima_project(make_project, tmp_path, python=str(quick_python))
    _, _, err = cli("check")
    assert "base model: an Anima DiT (2 blocks, LLM adapter inside)" in err
    assert "text_encoder: a Qwen3 text encoder (1 layers)" in err
    assert "vae: a Qwen-Image VAE (3-D causal convolutions)" in err
    assert "project.base_model" not in err and "project.vae" not in err


@pytest.mark.parametrize(("slot", "build", "expected"), [
    ("base_model", lambda files: files["text_encoder"],
     "project.base_model is a Qwen3 text encoder (1 layers), but project.model is 'anima'; point base_model at an "
     "Anima checkpoint"),
    ("base_model", lambda files: write_safetensors(files["base_model"].with_name("dit.safetensors"), ANIMA_DIT_KEYS),
     "project.base_model is an Anima DiT (2 blocks, LLM adapter not inside); the pinned anima_train_network.py "
     "loads the LLM adapter only from the DiT file"),
    ("vae", lambda files: files["base_model"],
     "project.vae is an Anima DiT (2 blocks, LLM adapter inside), not the Qwen-Image VAE"),
])
def test_check_names_a_wrong_file(make_project, cli, tmp_path: Path, quick_python: Path, slot: str, build,
                                  expected: str) -> None:
    files = write_anima_files(tmp_path / "models")
    anima_project(make_project, tmp_path, python=str(quick_python), **{slot: str(build(files))})
    code, _, err = cli("check")
    assert code == 2 and expected in err


def test_init_writes_the_anima_placeholders(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import make_character

    for index, name in enumerate(("alice", "bob")):
        make_character(tmp_path / "img" / name, index, 2)
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("init", "img", "--model", "anima")
    assert code == 0 and "set project.base_model, project.text_encoder, project.vae in it" in err
    text = (tmp_path / "onetwo.toml").read_text(encoding="utf-8")
    assert 'model = "anima"\n' in text and 'text_encoder = "CHANGE-ME/text-encoder"\n' in text
    assert 'vae = "CHANGE-ME/vae"\n' in text and '# t5_tokenizer = "CHANGE-ME/t5-tokenizer"\n' in text
    project = load_project(tmp_path / "onetwo.toml")
    assert project.model_files["vae"] == tmp_path / "CHANGE-ME" / "vae"
    problems = model_file_problems("anima", project.model_files)[0]
    assert [problem.split(": ", 1)[1] for problem in problems] == [
        "project.text_encoder (the Qwen3-0.6B text encoder) not found; check the path",
        "project.vae (the Qwen-Image VAE) not found; check the path"]


def test_render_writes_no_gui_file_for_anima(make_project, cli, tmp_path: Path) -> None:
    anima_project(make_project, tmp_path)
    code, _, err = cli("render", "stage1", "--no-progress")
    assert code == 0, err
    assert "stage1: no kohya_ss GUI config: onetwo does not map Anima onto the GUI's fields yet" in err
    assert (tmp_path / "work" / "stage1" / "config.toml").is_file()
    assert not list((tmp_path / "work" / "stage1").glob("*gui*"))


def test_the_layout_clause_in_an_anima_composite_caption(make_project, tmp_path: Path, cli) -> None:
    clause = "{left}/{right}/COMPOSITE, {left_tags}, {right_tags}, {left} on the left, {right} on the right"
    file, _ = anima_project(make_project, tmp_path)
    file.write_text(file.read_text(encoding="utf-8").replace("[composite]\n", f"[composite]\ncaption = \"{clause}\"\n"),
                    encoding="utf-8")
    code, _, err = cli("render", "stage2", "--no-progress")
    assert code == 0, err
    captions = [path.read_text(encoding="utf-8") for path in (tmp_path / "work" / "composites").glob("*.txt")]
    firsts = ("alice/bob/COMPOSITE, ", "bob/alice/COMPOSITE, ")
    assert captions and all(caption.startswith(firsts) for caption in captions)
    for caption in captions:
        left, right = caption.split("/")[:2]
        assert caption.endswith(f", {left} on the left, {right} on the right")


def test_the_targeted_gui_has_anima_fields_that_onetwo_leaves_unmapped() -> None:
    """docs/anima.md: the kohya_ss GUI that onetwo/kohya/gui_fields.py was generated from has an Anima LoRA type and
    anima_* fields, but its training code (how they become anima_train_network.py arguments) was not read for this
    pin, so onetwo writes no GUI file for Anima rather than one it cannot check."""
    from onetwo.kohya.families import ANIMA, SD1, SDXL
    from onetwo.kohya.gui_fields import GUI_CHOICES, GUI_FIELDS

    anima = {field for field in GUI_FIELDS if field.startswith("anima_")}
    assert {"anima_checkbox", "anima_qwen3", "anima_vae", "anima_t5_tokenizer_path",
            "anima_qwen3_max_token_length", "anima_timestep_sampling", "anima_discrete_flow_shift"} <= anima
    assert "Anima" in GUI_CHOICES["LoRA_type"]
    assert ANIMA.gui is False and SD1.gui and SDXL.gui
