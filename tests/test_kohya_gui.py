"""`render` writes work_dir/<stage>/kohya_ss.json, a kohya_ss GUI LoRA config of the same run, checked against the
field table generated from a pinned kohya_ss (onetwo/kohya/gui_fields.py): every key is a GUI field, every dropdown
value is one the GUI lists, and the settings that change the run are the rendered ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from onetwo.kohya.gui import LYCORIS_DEFAULTS, LYCORIS_TYPES, OFF, PUBLISHING_OFF, parse_network_args
from onetwo.kohya.gui_fields import GUI_CHOICES, GUI_FIELDS, KOHYA_SS_COMMIT
from onetwo.kohya.render import flatten_sections
from onetwo.project.strict import tomllib

REPO = Path(__file__).resolve().parent.parent


def rendered(stage: str) -> tuple[dict, dict, str]:
    folder = Path("work") / stage
    gui = json.loads((folder / "kohya_ss.json").read_text(encoding="utf-8"))
    flat = flatten_sections(tomllib.loads((folder / "config.toml").read_text(encoding="utf-8")))
    return gui, flat, (folder / "sample_prompts.txt").read_text(encoding="utf-8")


def gui_network_args(gui: dict) -> dict[str, str]:
    """What the GUI passes as --network_args for LyCORIS/LoHa (kohya_gui/lora_gui.py train_model at the pinned
    commit: preset, conv_dim, conv_alpha, use_tucker, rank_dropout, bypass_mode, dora_wd, module_dropout, use_scalar,
    rank_dropout_scale, algo=loha, train_norm)."""
    text = (f"preset={gui['LyCORIS_preset']} conv_dim={gui['conv_dim']} conv_alpha={gui['conv_alpha']} "
            f"use_tucker={gui['use_tucker']} rank_dropout={gui['rank_dropout']} bypass_mode={gui['bypass_mode']} "
            f"dora_wd={gui['dora_wd']} module_dropout={gui['module_dropout']} use_scalar={gui['use_scalar']} "
            f"rank_dropout_scale={gui['rank_dropout_scale']} algo=loha train_norm={gui['train_norm']}")
    return parse_network_args(text.split())


def lycoris_defaults(algo: str) -> dict[str, str]:
    """lycoris.kohya's default for each argument the GUI's LoRA_type of `algo` passes."""
    return {arg: str(LYCORIS_DEFAULTS[arg]) for arg in LYCORIS_TYPES[algo][1] if arg in LYCORIS_DEFAULTS}


def test_the_field_table_names_its_source() -> None:
    source = (REPO / "onetwo" / "kohya" / "gui_fields.py").read_text(encoding="utf-8")
    assert re.fullmatch(r"[0-9a-f]{40}", KOHYA_SS_COMMIT)
    assert f"bmaltais/kohya_ss commit {KOHYA_SS_COMMIT}" in source and "dump_kohya_gui_fields.py" in source
    assert "LyCORIS/LoHa" in GUI_CHOICES["LoRA_type"] and "dataset_config" in GUI_FIELDS
    assert set(OFF) <= set(GUI_FIELDS), set(OFF) - set(GUI_FIELDS)
    assert set(PUBLISHING_OFF) <= set(GUI_FIELDS), set(PUBLISHING_OFF) - set(GUI_FIELDS)


@pytest.mark.parametrize(("stage", "model", "mode"), [("stage1", "sd1", "sequential"), ("stage2", "sd1", "sequential"),
                                                     ("stage2", "sdxl", "sequential"), ("joint", "sd1", "joint")])
def test_render_writes_a_gui_config_of_the_same_run(make_project, cli, stage: str, model: str, mode: str,
                                                    tmp_path: Path) -> None:
    make_project(project={"model": model, "mode": mode})
    optimizer_args = 'optimizer_args=["weight_decay=0.1", "betas=0.9,0.99"]'
    code, _, err = cli("render", stage, "--no-progress", "--set", optimizer_args)
    assert code == 0, err
    gui, flat, prompts = rendered(stage)
    assert set(gui) <= set(GUI_FIELDS), set(gui) - set(GUI_FIELDS)
    for field, value in gui.items():
        if field in GUI_CHOICES:
            assert value in GUI_CHOICES[field], (field, value)
    assert gui["LoRA_type"] == "LyCORIS/LoHa"
    assert gui["dataset_config"] == str(tmp_path / "work" / stage / "dataset.toml")
    assert gui["train_data_dir"] == "" and gui["reg_data_dir"] == ""
    assert (gui["max_train_epochs"], gui["max_train_steps"]) == (flat["max_train_epochs"], 0)
    weights = str(tmp_path / "out" / "demo-stage1.safetensors") if stage == "stage2" else ""
    assert gui["network_weights"] == weights == flat.get("network_weights", "")
    assert gui["sample_prompts"] == prompts.rstrip("\n") and prompts.count("\n") == 4
    assert gui["optimizer_args"] == "weight_decay=0.1 betas=0.9,0.99"
    assert gui["optimizer"] == flat["optimizer_type"] == "AdamW8bit"
    assert gui["xformers"] == "xformers"
    assert gui["sdxl"] is (model == "sdxl") and gui["sdxl_no_half_vae"] is bool(flat.get("no_half_vae"))
    for key in ("network_dim", "network_alpha", "learning_rate", "unet_lr", "text_encoder_lr", "lr_scheduler",
                "mixed_precision", "save_precision", "clip_skip", "max_token_length", "sample_sampler",
                "sample_every_n_epochs", "save_every_n_epochs", "output_dir", "output_name", "training_comment",
                "pretrained_model_name_or_path", "gradient_accumulation_steps", "max_grad_norm"):
        assert gui[key] == flat.get(key, 0), key  # 0: the GUI's "not set" (SDXL has no clip_skip)
    # The network the GUI builds is the one onetwo renders, LyCORIS's defaults filled in for the arguments it adds.
    ours = parse_network_args(flat["network_args"])
    assert gui_network_args(gui) == {**lycoris_defaults("loha"), **ours}
    assert f"{stage}: kohya_ss GUI config → " in err


def test_settings_without_a_gui_field_are_carried_or_named(make_project, cli) -> None:
    make_project()
    code, _, err = cli("render", "stage1", "--no-progress", "--set", "xformers=false", "--set", "sdpa=true",
                       "--set", "tokenizer_cache_dir=/models/tok", "--set", "lr_warmup_steps=0.05")
    assert code == 0, err
    gui, flat, _ = rendered("stage1")
    assert gui["xformers"] == "sdpa"
    assert gui["additional_parameters"].split() == ["--lowram", "--tokenizer_cache_dir", "/models/tok"]
    assert (gui["lr_warmup"], gui["lr_warmup_steps"]) == (5.0, 0)  # the GUI's percent of the total steps
    # The provenance strings hold spaces and quotes, which the GUI's "Additional parameters" strips and splits.
    assert "the GUI has no way to set metadata_onetwo, metadata_trigger_phrase\n" in err
    covered = set(GUI_FIELDS) | {"optimizer_type", "network_module", "network_args", "sdpa", "no_metadata",
                                 "debug_dataset", "lowram", "tokenizer_cache_dir", "metadata_onetwo",
                                 "metadata_trigger_phrase", "network_train_unet_only",
                                 "network_train_text_encoder_only"}
    assert set(flat) <= covered, set(flat) - covered


def test_an_absolute_warmup_goes_to_the_additional_parameters(make_project, cli) -> None:
    """With a dataset config and epochs the GUI zeroes its own step count: the command line carries it."""
    make_project()
    _, _, err = cli("render", "stage1", "--no-progress", "--set", "lr_warmup_steps=100")
    gui, _, _ = rendered("stage1")
    assert (gui["lr_warmup"], gui["lr_warmup_steps"]) == (0, 0)
    assert gui["additional_parameters"].split()[-2:] == ["--lr_warmup_steps", "100"]
    assert "lr_warmup_steps" not in err.split("the GUI has no way to set")[1].splitlines()[0]


def test_the_docs_list_what_the_gui_cannot_express() -> None:
    page = (REPO / "docs" / "elsewhere.md").read_text(encoding="utf-8")
    section = page[page.index("## The kohya_ss GUI"):]
    for name in ("kohya_ss.json", "metadata_onetwo", "metadata_trigger_phrase", "Additional parameters",
                 "user_presets", KOHYA_SS_COMMIT[:12]):
        assert name in section, name
