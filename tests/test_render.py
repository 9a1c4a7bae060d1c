from __future__ import annotations

import sys
from pathlib import Path

import pytest

from onetwo.data.scan import scan_project
from onetwo.errors import OnetwoError
from onetwo.kohya.buckets import BucketSettings
from onetwo.kohya.render import flatten_sections, load_templates, parse_set, render_stage, sample_prompts
from onetwo.project.file import load_project

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# The 1to2 method's published settings (training TOML), less what onetwo computes per stage.
REFERENCE = {
    "v2": False, "v_parameterization": False, "no_metadata": False, "unet_lr": 0.0005, "text_encoder_lr": 0.0005,
    "network_module": "lycoris.kohya", "network_dim": 8, "network_alpha": 1,
    "network_args": ["conv_dim=0", "conv_alpha=16", "algo=loha"], "network_train_unet_only": False,
    "network_train_text_encoder_only": False, "optimizer_type": "AdamW8bit", "learning_rate": 0.0005,
    "max_grad_norm": 1.0, "lr_scheduler": "cosine", "lr_warmup_steps": 0, "debug_dataset": False,
    "save_precision": "fp16", "save_every_n_epochs": 1, "max_token_length": 225, "mem_eff_attn": False,
    "xformers": True, "max_train_epochs": 40, "max_data_loader_n_workers": 8, "persistent_data_loader_workers": True,
    "gradient_checkpointing": False, "gradient_accumulation_steps": 1, "mixed_precision": "fp16", "clip_skip": 2,
    "lowram": True, "sample_every_n_epochs": 1, "sample_sampler": "k_euler_a", "save_model_as": "safetensors",
}
COMPUTED = {"pretrained_model_name_or_path", "output_dir", "output_name", "logging_dir", "sample_prompts",
            "training_comment", "network_weights"}


def rendered(make_project, stage: str, cli_sets: list[str] = (), **sections):
    project = load_project(make_project(**sections))
    scans = scan_project(project)
    return project, render_stage(project, stage, scans, load_templates(project, stage), parse_set(cli_sets),
                                 project.lora_file("stage1") if stage == "stage2" else None)


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_rendered_training_settings_are_exactly_the_reference(make_project, stage: str) -> None:
    project, result = rendered(make_project, stage)
    flat = result.flat_config()
    assert {key: value for key, value in flat.items() if key not in COMPUTED} == REFERENCE
    assert flat["output_name"] == f"demo-{stage}"
    assert flat["pretrained_model_name_or_path"] == str(project.base_model)
    assert ("network_weights" in flat) == (stage == "stage2")


def test_stage_datasets(make_project, tmp_path: Path) -> None:
    project, one = rendered(make_project, "stage1")
    dataset = one.dataset["datasets"][0]
    assert (dataset["resolution"], dataset["batch_size"]) == (640, 4)
    assert [subset["class_tokens"] for subset in dataset["subsets"]] == ["alice", "bob"]
    for subset in dataset["subsets"]:
        assert subset["caption_extension"] == ".txt" and subset["keep_tokens"] == 1
        assert Path(subset["image_dir"]).is_relative_to(project.work_dir)
    _, two = rendered(make_project, "stage2")
    dataset = two.dataset["datasets"][0]
    assert (dataset["resolution"], dataset["batch_size"]) == (768, 2)
    (subset,) = dataset["subsets"]
    assert subset["image_dir"] == str(project.composite_dir)
    assert subset["flip_aug"] is False and subset["keep_tokens"] == 1 and subset["caption_extension"] == ".txt"
    assert two.flat_config()["network_weights"] == str(project.lora_file("stage1"))


def test_merge_order_template_computed_project_cli(make_project) -> None:
    sections = {"training": {"max_train_epochs": 5, "seed": 1}, "stage1": {"seed": 2, "dataset": {"resolution": 64}}}
    _, result = rendered(make_project, "stage1", ["seed=3", "dataset.batch_size=1", "subset.shuffle_caption=false"],
                         **sections)
    flat = result.flat_config()
    assert (flat["max_train_epochs"], flat["seed"]) == (5, 3)
    dataset = result.dataset["datasets"][0]
    assert (dataset["resolution"], dataset["batch_size"]) == (64, 1)
    assert all(subset["shuffle_caption"] is False for subset in dataset["subsets"])
    _, result = rendered(make_project, "stage1", ["subset.num_repeats=7", "subset.keep_tokens=2"])
    assert {(s["num_repeats"], s["keep_tokens"]) for s in result.dataset["datasets"][0]["subsets"]} == {(7, 2)}
    _, result = rendered(make_project, "stage1", ["output_name=mine"])
    assert result.flat_config()["output_name"] == "mine"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["xformer=false"], "'xformer' is not an option of train_network.py (did you mean 'xformers'?)"),
        (["max_train_epochs=ten"], "max_train_epochs must be an integer"),
        (["xformers=1"], "xformers must be true or false"),
        (["dataset.resolutoin=64"], "'resolutoin' is not a kohya datasets setting (did you mean 'resolution'?)"),
        (["subset.flip_aug=true"], "flip_aug mirrors composites"),
        (["resolution=64"], "resolution must be a string (quote it)"),
        (["subset.image_dir=x"], "image_dir: onetwo writes it for each subset"),
        (["subset.num_repeat=2"], "'num_repeat' is not a kohya subsets setting (did you mean 'num_repeats'?)"),
    ],
)
def test_unknown_or_mistyped_keys_are_refused(make_project, sets: list[str], message: str) -> None:
    with pytest.raises(OnetwoError) as error:
        rendered(make_project, "stage2", sets)
    assert message in str(error.value)


def test_a_template_typo_is_refused_naming_the_template(make_project, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    repo = Path(__file__).resolve().parent.parent / "templates"
    for name in ("train.toml", "dataset-stage1.toml", "dataset-stage2.toml"):
        (templates / name).write_text((repo / name).read_text())
    train = templates / "train.toml"
    train.write_text(train.read_text().replace("clip_skip = 2", "clipskip = 2"))
    with pytest.raises(OnetwoError) as error:
        rendered(make_project, "stage1", project={"templates": "templates"})
    assert f"{train}: 'clipskip' is not an option" in str(error.value)


def test_parse_set_values_are_toml_else_strings() -> None:
    overrides = parse_set(["a=1", "b=true", 'c="x"', "d=AdamW", "e=[1, 2]", "dataset.f=0.5"])
    assert overrides.train == {"a": 1, "b": True, "c": "x", "d": "AdamW", "e": [1, 2]}
    assert overrides.dataset == {"f": 0.5}
    with pytest.raises(OnetwoError, match="key=value"):
        parse_set(["novalue"])


def test_sample_prompts_cover_singles_and_both_orders(make_project) -> None:
    project = load_project(make_project(["a", "b", "c"]))
    lines = sample_prompts(project, scan_project(project), BucketSettings((640, 640))).splitlines()
    assert len(lines) == 3 + 6
    assert lines[0].startswith("a, 1girl, smile, pose0 --n ")
    prompts = [line.split(" --")[0] for line in lines[3:]]
    expected = {f"{x}/{y}/COMPOSITE" for x in "abc" for y in "abc" if x != y}
    assert {prompt.split(",")[0] for prompt in prompts} == expected
    assert all("--w 640 --h 640" in line for line in lines)


def test_written_tomls_parse_back(make_project, cli, tmp_path: Path) -> None:
    make_project()
    code, _, err = cli("render", "stage2")
    assert code == 0, err
    config = tomllib.loads((tmp_path / "work" / "stage2" / "config.toml").read_text())
    dataset = tomllib.loads((tmp_path / "work" / "stage2" / "dataset.toml").read_text())
    assert flatten_sections(config)["output_name"] == "demo-stage2"
    assert dataset["datasets"][0]["subsets"][0]["image_dir"] == str((tmp_path / "work" / "composites").resolve())
    assert (tmp_path / "work" / "composites").is_dir()
