"""A rendered stage as a kohya_ss GUI LoRA configuration (the JSON its LoRA tab saves and loads), meaning the same
run when the GUI trains it. Pure but for `write_gui_config`.

The GUI keeps what it showed before for every key a loaded file leaves out, so every field that changes an SD1/SDXL
LoRA run is written, with kohya's own defaults where onetwo sets nothing, and the publishing and logging fields
(Hugging Face upload, wandb) are written off. The dataset comes from the rendered dataset TOML (`dataset_config`),
so the GUI's folder fields stay empty. The network becomes the LoRA_type whose arguments build it; settings with no
GUI field, and a warmup the GUI's fields cannot hold, go into its "Additional parameters" (plain command-line
arguments, which win over the GUI's config file) when they fit there; the rest are returned by name. A value a GUI
dropdown does not list is a warning. Field names and dropdown values: onetwo/kohya/gui_fields.py, generated from a
pinned kohya_ss.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onetwo.fsutil import write_text_if_changed
from onetwo.kohya.buckets import settings_from_dataset
from onetwo.kohya.families import FAMILIES
from onetwo.kohya.gui_fields import GUI_CHOICES, GUI_FIELDS, OPEN_CHOICES
from onetwo.kohya.provenance import metadata_value
from onetwo.kohya.render import RenderedStage
from onetwo.messages import warn
from onetwo.trainer.launch import accelerate_options

# What the GUI writes when a field is off: kohya's default for the same setting, so loading changes nothing else.
OFF: dict[str, Any] = {
    "v2": False, "v_parameterization": False, "sdxl": False, "flux1_checkbox": False, "sd3_checkbox": False,
    "hunyuan_image_checkbox": False, "anima_checkbox": False, "lumina_checkbox": False, "train_data_dir": "",
    "reg_data_dir": "", "model_list": "custom", "lr_warmup": 0, "lr_warmup_steps": 0, "seed": 0,
    "cache_latents": False, "cache_latents_to_disk": False, "train_inpainting": False, "stop_text_encoder_training": 0,
    "max_train_steps": 0, "lr_scheduler_num_cycles": 1, "lr_scheduler_power": 1.0, "optimizer_args": "",
    "lr_scheduler_args": "", "lr_scheduler_type": "", "max_grad_norm": 1.0, "num_cpu_threads_per_process": 2,
    "num_processes": 1, "num_machines": 1, "multi_gpu": False, "gpu_ids": "", "main_process_port": 0,
    "dynamo_backend": "no", "dynamo_mode": "default", "dynamo_use_fullgraph": False, "dynamo_use_dynamic": False,
    "extra_accelerate_launch_args": "", "gradient_checkpointing": False, "fp8_base": False, "full_fp16": False,
    "full_bf16": False, "highvram": False, "lowvram": False, "save_state": False, "save_state_on_train_end": False,
    "resume": "", "prior_loss_weight": 1.0, "color_aug": False, "flip_aug": False, "masked_loss": False,
    "clip_skip": 0, "gradient_accumulation_steps": 1, "mem_eff_attn": False, "max_token_length": 75,
    "max_data_loader_n_workers": 0, "keep_tokens": 0, "persistent_data_loader_workers": False,
    "bucket_no_upscale": False, "random_crop": False, "bucket_reso_steps": 64, "v_pred_like_loss": 0,
    "caption_dropout_every_n_epochs": 0, "caption_dropout_rate": 0, "noise_offset_type": "Original",
    "noise_offset": 0, "noise_offset_random_strength": False, "adaptive_noise_scale": 0,
    "multires_noise_iterations": 0, "multires_noise_discount": 0.3, "ip_noise_gamma": 0,
    "ip_noise_gamma_random_strength": False, "additional_parameters": "", "loss_type": "l2",
    "huber_schedule": "snr", "huber_c": 0.1, "huber_scale": 1.0, "vae_batch_size": 0, "min_snr_gamma": 0,
    "save_every_n_epochs": 0, "save_every_n_steps": 0, "save_last_n_steps": 0, "save_last_n_steps_state": 0,
    "save_last_n_epochs": 0, "save_last_n_epochs_state": 0, "skip_cache_check": False,
    "scale_v_pred_loss_like_noise_pred": False, "min_timestep": 0, "max_timestep": 1000, "vae": "",
    "weighted_captions": False, "debiased_estimation_loss": False, "sdxl_cache_text_encoder_outputs": False,
    "sdxl_no_half_vae": False, "network_weights": "", "dim_from_weights": False, "sample_every_n_steps": 0,
    "sample_every_n_epochs": 0, "sample_prompts": "", "down_lr_weight": "", "mid_lr_weight": "", "up_lr_weight": "",
    "block_lr_zero_threshold": "", "block_dims": "", "block_alphas": "", "conv_block_dims": "",
    "conv_block_alphas": "", "scale_weight_norms": 0, "network_dropout": 0, "loraplus_lr_ratio": 0,
    "loraplus_text_encoder_lr_ratio": 0, "loraplus_unet_lr_ratio": 0, "train_lora_ggpo": False,
    "metadata_author": "", "metadata_description": "", "metadata_license": "", "metadata_tags": "",
    "metadata_title": "", "training_comment": "", "caption_extension": ".txt", "shuffle_caption": False,
    "enable_bucket": True, "min_bucket_reso": 256, "max_bucket_reso": 1024, "lr_scheduler": "constant",
    "optimizer": "AdamW", "learning_rate": 2e-6, "text_encoder_lr": 0, "unet_lr": 0, "t5xxl_lr": 0,
    "save_model_as": "safetensors", "save_precision": "float", "mixed_precision": "no", "sample_sampler": "ddim",
}
# What the GUI builds for each LoRA_type (kohya_gui/lora_gui.py train_model at the pinned commit): the network
# arguments it passes from its fields. LyCORIS types always pass these; the kohya types pass a field only when it is
# set (not 0 or empty).
LORA_BLOCK_ARGS = ("down_lr_weight", "mid_lr_weight", "up_lr_weight", "block_lr_zero_threshold", "block_dims",
                   "block_alphas", "conv_block_dims", "conv_block_alphas", "rank_dropout", "module_dropout")
KOHYA_TYPES = {"networks.lora": ("Standard", LORA_BLOCK_ARGS), "networks.lora_fa": ("LoRA-FA", LORA_BLOCK_ARGS),
               "networks.dylora": ("Kohya DyLoRA", ("conv_dim", "conv_alpha", "unit", *LORA_BLOCK_ARGS))}
KOHYA_LOCON = ("Kohya LoCon", ("conv_dim", "conv_alpha", *LORA_BLOCK_ARGS))  # networks.lora with conv layers
_LYCORIS_BASE = ("preset", "conv_dim", "conv_alpha")
_LOCON_ARGS = (*_LYCORIS_BASE, "use_tucker", "rank_dropout", "bypass_mode", "dora_wd", "module_dropout", "use_scalar",
               "rank_dropout_scale", "train_norm")
LYCORIS_TYPES = {  # lycoris.kohya's algo → (LoRA_type, the arguments it passes)
    "lora": ("LyCORIS/LoCon", _LOCON_ARGS),  # lycoris's default algo: the same LoCon module
    "locon": ("LyCORIS/LoCon", _LOCON_ARGS),
    "loha": ("LyCORIS/LoHa", _LOCON_ARGS),
    "lokr": ("LyCORIS/LoKr", (*_LOCON_ARGS, "factor", "use_cp", "decompose_both")),
    "boft": ("LyCORIS/BOFT", (*_LYCORIS_BASE, "module_dropout", "use_tucker", "rank_dropout", "rank_dropout_scale",
                              "train_norm")),
    "diag-oft": ("LyCORIS/Diag-OFT", (*_LYCORIS_BASE, "module_dropout", "use_tucker", "rank_dropout",
                                      "rank_dropout_scale", "constraint", "rescaled", "train_norm")),
    "dylora": ("LyCORIS/DyLoRA", (*_LYCORIS_BASE, "use_tucker", "block_size", "rank_dropout", "module_dropout",
                                  "train_norm")),
    "glora": ("LyCORIS/GLoRA", (*_LYCORIS_BASE, "use_tucker", "rank_dropout", "module_dropout", "rank_dropout_scale",
                                "train_norm")),
    "ia3": ("LyCORIS/iA3", (*_LYCORIS_BASE, "train_on_input")),
    "full": ("LyCORIS/Native Fine-Tuning", ("preset", "rank_dropout", "module_dropout", "rank_dropout_scale",
                                            "train_norm")),
}
FIELD_OF_ARG = {"preset": "LyCORIS_preset", "constraint": "constrain", "block_size": "unit"}
# lycoris.kohya's default for each argument a LyCORIS type passes (conv_dim / conv_alpha: the network's dim / alpha).
LYCORIS_DEFAULTS: dict[str, Any] = {
    "preset": "full", "use_tucker": False, "rank_dropout": 0, "bypass_mode": False, "dora_wd": False,
    "module_dropout": 0, "use_scalar": False, "rank_dropout_scale": False, "train_norm": False, "factor": -1,
    "use_cp": False, "decompose_both": False, "constraint": 0, "rescaled": False, "block_size": 4,
    "train_on_input": False}
# The GUI's own defaults for its network fields, written where the chosen LoRA_type does not pass them: lycoris's,
# but for the two the GUI starts elsewhere.
NETWORK_OFF: dict[str, Any] = {**{FIELD_OF_ARG.get(arg, arg): value for arg, value in LYCORIS_DEFAULTS.items()},
                               "unit": 1, "train_on_input": True}
# Publishing and logging: a field the file left out would keep what the GUI showed before, so a stale Hugging Face
# upload or wandb key would go with this run.
PUBLISHING_OFF: dict[str, Any] = {
    "huggingface_repo_id": "", "huggingface_token": "", "huggingface_repo_type": "", "huggingface_repo_visibility": "",
    "huggingface_path_in_repo": "", "save_state_to_huggingface": False, "resume_from_huggingface": "",
    "async_upload": False, "log_with": "", "wandb_api_key": "", "wandb_run_name": "", "log_tracker_name": "",
    "log_tracker_config": "", "log_config": False}
# Training keys the GUI takes under another name or derives itself (from the learning rates, the dropdowns).
RENAMED = {"optimizer_type": "optimizer", "no_half_vae": "sdxl_no_half_vae"}
DERIVED = frozenset({"network_module", "network_args", "optimizer_args", "xformers", "sdpa", "sample_prompts",
                     "max_train_steps", "max_train_epochs", "text_encoder_lr", "lr_warmup_steps",
                     "resolution", "train_batch_size"})
DATASET_FIELDS = ("enable_bucket", "min_bucket_reso", "max_bucket_reso", "bucket_reso_steps", "bucket_no_upscale")
SUBSET_FIELDS = ("caption_extension", "shuffle_caption", "keep_tokens", "flip_aug", "color_aug", "random_crop",
                 "caption_dropout_rate", "caption_dropout_every_n_epochs")


@dataclass(frozen=True)
class GuiConfig:
    fields: dict[str, Any]
    not_expressible: tuple[str, ...]  # training keys the GUI has no way to pass on, by name
    warnings: tuple[str, ...] = ()  # values the GUI's dropdowns do not list, each named


def _bool(value: Any) -> Any:
    return {"true": True, "false": False}.get(str(value).lower(), value)


def parse_network_args(items: Any) -> dict[str, str]:
    pairs = (str(item).partition("=") for item in (items or []))
    return {key.strip(): value.strip() for key, _, value in pairs}


def network_type(module: str, args: Mapping[str, str]) -> tuple[str, tuple[str, ...]] | None:
    """The GUI's LoRA_type that builds this network and the network arguments it passes; None: no type does."""
    if module == "lycoris.kohya":
        return LYCORIS_TYPES.get(args.get("algo", "lora").lower())
    if module == "networks.lora" and "conv_dim" in args:
        return KOHYA_LOCON
    return KOHYA_TYPES.get(module)


def network_fields(flat: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """LoRA_type and the network fields; what the GUI cannot pass on, by name."""
    args = parse_network_args(flat.get("network_args"))
    dim, alpha = flat.get("network_dim", 8), flat.get("network_alpha", 1)
    module = str(flat.get("network_module", "networks.lora"))
    fields: dict[str, Any] = {"network_dim": dim, "network_alpha": alpha, "conv_dim": dim, "conv_alpha": alpha,
                              **NETWORK_OFF}
    chosen = network_type(module, args)
    if chosen is None:
        return {**fields, "LoRA_type": "Standard"}, ["network_module", *(f"network_args {key}" for key in args)]
    fields["LoRA_type"], passed = chosen
    lycoris = module == "lycoris.kohya"
    args.pop("algo", None)
    if not lycoris:  # the kohya types pass conv_dim / conv_alpha only when set (Kohya LoCon: always)
        fields.update({"conv_dim": 0, "conv_alpha": 1 if chosen == KOHYA_LOCON else 0})
        if module == "networks.lora" and "conv_dim" not in args:
            args.pop("conv_alpha", None)  # networks.lora ignores it without conv_dim
    for arg in passed:
        field = FIELD_OF_ARG.get(arg, arg)
        if arg in args:
            fields[field] = metadata_value(_bool(args.pop(arg)))
        elif lycoris and arg in LYCORIS_DEFAULTS:
            fields[field] = LYCORIS_DEFAULTS[arg]
    return fields, [f"network_args {key}" for key in args]


def _argument(key: str, value: Any) -> str | None:
    """One setting as plain command-line text the GUI's "Additional parameters" can carry (it strips quotes and
    splits on spaces), or None."""
    values = value if isinstance(value, list) else [value]
    if value is True:
        return f"--{key}"
    texts = [str(item) for item in values]
    if isinstance(value, bool) or any(not text or any(c.isspace() or c in "\"'" for c in text) for text in texts):
        return None
    return " ".join([f"--{key}", *texts])


def warmup_fields(warmup: Any, max_train_steps: int, processes: int) -> tuple[dict[str, Any], str | None]:
    """The GUI's warmup fields for train_network.py's lr_warmup_steps (a step count, or a ratio under 1), so that
    the GUI runs the same number of warmup steps; else the command-line text that does.

    The GUI turns its percent slider (whole percents) into the ratio percent / 100; with a dataset config it keeps its
    step count only when it has max_train_steps, and the command line wins over the config file it writes."""
    if not warmup:
        return {"lr_warmup": 0, "lr_warmup_steps": 0}, None
    if max_train_steps:  # sd-scripts: int(ratio x max_train_steps x processes), a step count as given
        steps = int(warmup * max_train_steps * processes) if isinstance(warmup, float) else int(warmup)
        return {"lr_warmup": 0, "lr_warmup_steps": steps}, None
    percent = round(warmup * 100) if isinstance(warmup, float) else None
    if percent is not None and 0 < percent < 100 and percent / 100 == warmup:
        return {"lr_warmup": percent, "lr_warmup_steps": 0}, None
    return {"lr_warmup": 0, "lr_warmup_steps": 0}, f"--lr_warmup_steps {warmup}"


def choice_warnings(fields: Mapping[str, Any], target: str) -> list[str]:
    """A value a dropdown of the GUI does not list (and takes no typed value): the GUI refuses or replaces it."""
    return [f"{target}: {field} = {value!r} is not in the kohya_ss GUI's {field} list "
            f"({', '.join(repr(choice) for choice in GUI_CHOICES[field])}); choose one there after loading"
            for field, value in fields.items()
            if field in GUI_CHOICES and field not in OPEN_CHOICES and value not in GUI_CHOICES[field]]


def gui_config(rendered: RenderedStage, dataset_file: Path, model: str, accelerate: Mapping[str, Any],
               network_weights: Path | None = None) -> GuiConfig:
    flat = rendered.flat_config()
    fields: dict[str, Any] = {**OFF, **PUBLISHING_OFF}
    general = rendered.dataset.get("general", {})
    datasets = rendered.dataset.get("datasets", [{}])
    dataset = {**general, **datasets[0]}
    subset = (datasets[0].get("subsets") or [{}])[0]
    fields.update({key: dataset[key] for key in DATASET_FIELDS if key in dataset})
    fields.update({key: subset[key] for key in SUBSET_FIELDS if key in subset})
    width, height = settings_from_dataset(general, datasets[0], flat).resolution
    fields.update({"max_resolution": f"{width},{height}", "train_batch_size": dataset.get("batch_size", 1),
                   "dataset_config": str(dataset_file), "sdxl": FAMILIES[model].gui_flag == "sdxl",
                   "sample_prompts": rendered.sample_prompts.rstrip("\n"),
                   "network_weights": str(network_weights) if network_weights else ""})
    leftovers: list[str] = []
    extra: list[str] = []
    for key, value in flat.items():
        field = RENAMED.get(key, key)
        if key in DERIVED:
            continue
        if field in GUI_FIELDS:
            fields[field] = value
        elif (argument := _argument(key, value)) is not None:
            extra.append(argument)
        elif value is not False:  # a flag left off is kohya's default: nothing to carry
            leftovers.append(key)
    network, unknown = network_fields(flat)
    fields.update(network)
    epochs = flat.get("max_train_epochs")
    fields.update({"max_train_epochs": epochs or 0, "epoch": epochs or 1,
                   "max_train_steps": 0 if epochs else flat.get("max_train_steps", 1600),
                   "optimizer_args": " ".join(str(item) for item in flat.get("optimizer_args") or []),
                   "xformers": "xformers" if flat.get("xformers") else "sdpa" if flat.get("sdpa") else "none"})
    text_encoder_lr = flat.get("text_encoder_lr")
    if text_encoder_lr is not None:
        fields["text_encoder_lr"] = text_encoder_lr[0] if isinstance(text_encoder_lr, list) else text_encoder_lr
    warmup, warmup_argument = warmup_fields(flat.get("lr_warmup_steps") or 0, int(fields["max_train_steps"] or 0),
                                            int(accelerate.get("num_processes") or 1))
    fields.update(warmup)
    extra += [warmup_argument] if warmup_argument else []
    fields["additional_parameters"] = " ".join(extra)
    for key in ("num_cpu_threads_per_process", "num_processes", "num_machines", "dynamo_backend", "gpu_ids",
                "main_process_port"):
        if key in accelerate:
            fields[key] = accelerate[key]
    rest = {key: value for key, value in accelerate.items() if key not in fields and key != "mixed_precision"}
    fields["extra_accelerate_launch_args"] = " ".join(accelerate_options(rest))
    return GuiConfig({key: fields[key] for key in sorted(fields)}, tuple(leftovers + unknown),
                     tuple(choice_warnings(fields, f"{rendered.stage}/kohya_ss.json")))


def write_gui_config(folder: Path, config: GuiConfig) -> Path:
    """`<stage folder>/kohya_ss.json`, which the GUI's LoRA tab opens with the ↩️ button next to "Load/Save Config
    file"; a warning for each value the GUI would not take as written."""
    target = folder / "kohya_ss.json"
    write_text_if_changed(target, json.dumps(config.fields, indent=2, ensure_ascii=False) + "\n")
    for message in config.warnings:
        warn(message)
    return target
