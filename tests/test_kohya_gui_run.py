"""kohya_ss.json means the run onetwo renders when the GUI trains it: the network it builds from LoRA_type and its
fields (kohya_gui/lora_gui.py train_model at the pinned commit), the warmup steps, no stale upload or logging
setting, and a warning for a value one of its dropdowns does not list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onetwo.kohya.gui_fields import GUI_CHOICES
from onetwo.kohya.render import flatten_sections
from onetwo.project.strict import tomllib

# The network arguments the GUI passes for each LoRA_type, copied from train_model's f-strings at the pinned commit
# (the kohya types add each block field only when it is set; none is here).
GUI_NETWORK_ARGS = {
    "Kohya LoCon": 'conv_dim="{conv_dim}" conv_alpha="{conv_alpha}"',
    "Standard": "",
    "LyCORIS/LoKr": "preset={LyCORIS_preset} conv_dim={conv_dim} conv_alpha={conv_alpha} use_tucker={use_tucker} "
                    "rank_dropout={rank_dropout} bypass_mode={bypass_mode} dora_wd={dora_wd} "
                    "module_dropout={module_dropout} factor={factor} use_cp={use_cp} use_scalar={use_scalar} "
                    "decompose_both={decompose_both} rank_dropout_scale={rank_dropout_scale} algo=lokr "
                    "train_norm={train_norm}",
    "LyCORIS/iA3": "preset={LyCORIS_preset} conv_dim={conv_dim} conv_alpha={conv_alpha} "
                   "train_on_input={train_on_input} algo=ia3",
    "LyCORIS/Native Fine-Tuning": "preset={LyCORIS_preset} rank_dropout={rank_dropout} module_dropout={module_dropout} "
                                  "rank_dropout_scale={rank_dropout_scale} algo=full train_norm={train_norm}",
    "LyCORIS/DyLoRA": 'preset={LyCORIS_preset} conv_dim={conv_dim} conv_alpha={conv_alpha} use_tucker={use_tucker} '
                      'block_size={unit} rank_dropout={rank_dropout} module_dropout={module_dropout} algo="dylora" '
                      'train_norm={train_norm}',
}
# lycoris.kohya's defaults for the arguments above (lycoris/kohya.py create_network).
LYCORIS_DEFAULTS = {"preset": "full", "use_tucker": False, "rank_dropout": 0, "bypass_mode": False, "dora_wd": False,
                    "module_dropout": 0, "factor": -1, "use_cp": False, "use_scalar": False, "decompose_both": False,
                    "rank_dropout_scale": False, "train_norm": False, "train_on_input": False, "block_size": 4}


def render(cli, *sets: str) -> tuple[dict, dict, str]:
    items = [part for item in sets for part in ("--set", item)]
    code, _, err = cli("render", "stage1", "--no-progress", *items)
    assert code == 0, err
    gui = json.loads(Path("work/stage1/kohya_ss.json").read_text(encoding="utf-8"))
    flat = flatten_sections(tomllib.loads(Path("work/stage1/config.toml").read_text(encoding="utf-8")))
    return gui, flat, err


def same_value(text: str) -> object:
    """How lycoris and kohya read a network argument: numbers and true/false, whatever their spelling."""
    lowered = text.strip('"').lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return float(lowered)
    except ValueError:
        return lowered


def gui_network(gui: dict) -> dict[str, object]:
    text = GUI_NETWORK_ARGS[gui["LoRA_type"]].format(**gui)
    pairs = (item.partition("=") for item in text.replace('"', "").split())
    return {key: same_value(value) for key, _, value in pairs}


def rendered_network(flat: dict, defaults: dict[str, object]) -> dict[str, object]:
    ours = {key: same_value(value) for key, _, value in (item.partition("=") for item in flat["network_args"])}
    return {**{key: same_value(str(value)) for key, value in defaults.items()}, **ours}


def test_a_kohya_lora_with_conv_dim_keeps_its_conv_layers(make_project, cli) -> None:
    make_project()
    gui, flat, err = render(cli, 'network_module="networks.lora"', 'network_args=["conv_dim=4", "conv_alpha=2"]')
    assert gui["LoRA_type"] == "Kohya LoCon"
    assert gui_network(gui) == rendered_network(flat, {}) == {"conv_dim": 4, "conv_alpha": 2}
    assert "network_args" not in err.split("the GUI has no way to set")[1].splitlines()[0]


def test_a_kohya_lora_without_conv_dim_is_standard(make_project, cli) -> None:
    make_project()
    gui, _, _ = render(cli, 'network_module="networks.lora"', "network_args=[]")
    assert gui["LoRA_type"] == "Standard" and gui_network(gui) == {}


@pytest.mark.parametrize(("args", "lora_type"), [
    (["algo=lokr", "factor=8", "conv_dim=4", "conv_alpha=4"], "LyCORIS/LoKr"),
    (["algo=ia3"], "LyCORIS/iA3"),
    (["algo=full"], "LyCORIS/Native Fine-Tuning"),
    (["algo=dylora", "block_size=2"], "LyCORIS/DyLoRA"),
])
def test_lycoris_algorithms_become_the_gui_type_that_builds_them(make_project, cli, args: list[str],
                                                                  lora_type: str) -> None:
    make_project()
    gui, flat, _ = render(cli, 'network_module="lycoris.kohya"', f"network_args={json.dumps(args)}")
    assert gui["LoRA_type"] == lora_type
    built = gui_network(gui)
    defaults = {key: value for key, value in LYCORIS_DEFAULTS.items() if key in built}
    defaults.update({key: flat[f"network_{key[5:]}"] for key in ("conv_dim", "conv_alpha") if key in built})
    assert built == rendered_network(flat, defaults)


@pytest.mark.parametrize("algo", ["boft", "diag-oft", "glora", "locon", "loha"])
def test_every_lycoris_algorithm_the_gui_lists_has_its_type(make_project, cli, algo: str) -> None:
    make_project()
    gui, _, _ = render(cli, 'network_module="lycoris.kohya"', f'network_args=["algo={algo}"]')
    assert gui["LoRA_type"] != "Standard" and gui["LoRA_type"] in GUI_CHOICES["LoRA_type"]
    assert gui["LoRA_type"].lower().endswith(algo)


def test_a_warmup_that_is_not_a_whole_percent_is_kept_exactly(make_project, cli) -> None:
    """The GUI's percent slider moves in whole percents: 0.025 would become 2 %, so the command line carries it."""
    make_project()
    gui, flat, _ = render(cli, "lr_warmup_steps=0.025")
    assert flat["lr_warmup_steps"] == 0.025
    assert (gui["lr_warmup"], gui["lr_warmup_steps"]) == (0, 0)
    assert gui["additional_parameters"].split()[-2:] == ["--lr_warmup_steps", "0.025"]


def test_a_whole_percent_warmup_stays_in_the_percent_field(make_project, cli) -> None:
    make_project()
    gui, _, _ = render(cli, "lr_warmup_steps=0.05")
    assert (gui["lr_warmup"], gui["lr_warmup_steps"]) == (5, 0)
    assert "--lr_warmup_steps" not in gui["additional_parameters"]


def test_upload_and_logging_fields_are_written_off(make_project, cli) -> None:
    make_project()
    gui, _, _ = render(cli)
    for field in ("huggingface_repo_id", "huggingface_token", "huggingface_repo_type", "huggingface_repo_visibility",
                  "huggingface_path_in_repo", "resume_from_huggingface", "log_with", "wandb_api_key", "wandb_run_name",
                  "log_tracker_name", "log_tracker_config"):
        assert gui[field] == "", field
    for field in ("save_state_to_huggingface", "async_upload", "log_config"):
        assert gui[field] is False, field
    assert gui["t5xxl_lr"] == 0  # the GUI adds a set T5 rate to text_encoder_lr, i.e. SDXL's second text encoder


def test_a_value_the_gui_does_not_list_is_a_warning_naming_the_field(make_project, cli) -> None:
    make_project()
    gui, _, err = render(cli, 'lr_scheduler="reduce_lr_on_plateau"')
    assert gui["lr_scheduler"] == "reduce_lr_on_plateau"
    warning = next(line for line in err.splitlines() if line.startswith("Warning:") and "kohya_ss.json" in line)
    assert "lr_scheduler" in warning and "'reduce_lr_on_plateau'" in warning and "'cosine'" in warning
    _, _, err = render(cli, 'optimizer_type="came_pytorch.CAME"')  # the GUI takes a typed optimizer
    assert not [line for line in err.splitlines() if "kohya_ss.json" in line and line.startswith("Warning:")]


def test_kohya_dylora_passes_conv_layers_only_when_asked(make_project, cli) -> None:
    """The kohya types pass a field only when it is set: a conv_dim filled in from network_dim would add conv layers
    (and networks.dylora then requires conv_dim == network_dim)."""
    make_project()
    gui, _, _ = render(cli, 'network_module="networks.dylora"', 'network_args=["unit=4"]')
    assert (gui["LoRA_type"], gui["unit"], gui["conv_dim"], gui["conv_alpha"]) == ("Kohya DyLoRA", 4, 0, 0)


def test_a_warmup_ratio_with_max_train_steps_becomes_the_steps_kohya_counts() -> None:
    """With max_train_steps the GUI keeps its step count: sd-scripts' int(ratio x steps x processes)."""
    from onetwo.kohya.gui import warmup_fields

    assert warmup_fields(0.025, 1000, 2) == ({"lr_warmup": 0, "lr_warmup_steps": 50}, None)
    assert warmup_fields(100, 1000, 1) == ({"lr_warmup": 0, "lr_warmup_steps": 100}, None)
    assert warmup_fields(0, 0, 1) == ({"lr_warmup": 0, "lr_warmup_steps": 0}, None)
