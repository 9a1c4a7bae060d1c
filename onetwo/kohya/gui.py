"""A rendered stage as a kohya_ss GUI LoRA configuration (the JSON its LoRA tab saves and loads). Pure.

The GUI keeps what it showed before for every key a loaded file leaves out, so every field that changes an SD1/SDXL
LoRA run is written, with kohya's own defaults where onetwo sets nothing. The dataset comes from the rendered
dataset TOML (`dataset_config`), so the GUI's folder fields stay empty. Settings with no GUI field go into its
"Additional parameters" (plain command-line arguments) when they fit there; the rest are returned by name.
Field names and dropdown values: onetwo/kohya/gui_fields.py, generated from a pinned kohya_ss.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onetwo.fsutil import write_text_if_changed
from onetwo.kohya.gui_fields import GUI_FIELDS
from onetwo.kohya.provenance import metadata_value
from onetwo.kohya.render import RenderedStage
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
    "save_last_n_epochs": 0, "save_last_n_epochs_state": 0, "skip_cache_check": False, "log_with": "",
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
    "optimizer": "AdamW", "learning_rate": 2e-6, "text_encoder_lr": 0, "unet_lr": 0, "save_model_as": "safetensors",
    "save_precision": "float", "mixed_precision": "no", "sample_sampler": "ddim",
}
# The LyCORIS network arguments the GUI has fields for (lora_gui.py builds --network_args from them), with
# lycoris.kohya's default for each; conv_dim / conv_alpha default to the network's dim / alpha.
LYCORIS_TYPES = {"loha": "LyCORIS/LoHa", "locon": "LyCORIS/LoCon"}
LYCORIS_FIELDS = {"preset": ("LyCORIS_preset", "full"), "use_tucker": ("use_tucker", False),
                  "rank_dropout": ("rank_dropout", 0), "bypass_mode": ("bypass_mode", False),
                  "dora_wd": ("dora_wd", False), "module_dropout": ("module_dropout", 0),
                  "use_scalar": ("use_scalar", False), "rank_dropout_scale": ("rank_dropout_scale", False),
                  "train_norm": ("train_norm", False)}
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


def _bool(value: Any) -> Any:
    return {"true": True, "false": False}.get(str(value).lower(), value)


def parse_network_args(items: Any) -> dict[str, str]:
    pairs = (str(item).partition("=") for item in (items or []))
    return {key.strip(): value.strip() for key, _, value in pairs}


def network_fields(flat: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """LoRA_type and the network fields; the network arguments the GUI has no field for, by name."""
    args = parse_network_args(flat.get("network_args"))
    dim, alpha = flat.get("network_dim", 8), flat.get("network_alpha", 1)
    fields: dict[str, Any] = {"network_dim": dim, "network_alpha": alpha,
                              "conv_dim": metadata_value(args.pop("conv_dim", dim)),
                              "conv_alpha": metadata_value(args.pop("conv_alpha", alpha))}
    module = flat.get("network_module", "networks.lora")
    algo = args.pop("algo", "lora").lower()
    if module == "lycoris.kohya" and algo in LYCORIS_TYPES:
        fields["LoRA_type"] = LYCORIS_TYPES[algo]
        for arg, (field, default) in LYCORIS_FIELDS.items():
            fields[field] = metadata_value(_bool(args.pop(arg, default)))
    else:
        fields["LoRA_type"] = "Standard"
        if module != "networks.lora":
            return fields, ["network_module", *(f"network_args {key}" for key in args)]
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


def gui_config(rendered: RenderedStage, dataset_file: Path, model: str, accelerate: Mapping[str, Any],
               network_weights: Path | None = None) -> GuiConfig:
    flat = rendered.flat_config()
    fields: dict[str, Any] = dict(OFF)
    datasets = rendered.dataset.get("datasets", [{}])
    dataset = {**rendered.dataset.get("general", {}), **datasets[0]}
    subset = (datasets[0].get("subsets") or [{}])[0]
    fields.update({key: dataset[key] for key in DATASET_FIELDS if key in dataset})
    fields.update({key: subset[key] for key in SUBSET_FIELDS if key in subset})
    resolution = dataset.get("resolution", flat.get("resolution", 512))
    width, height = (resolution, resolution) if isinstance(resolution, int) else str(resolution).split(",")
    fields.update({"max_resolution": f"{width},{height}", "train_batch_size": dataset.get("batch_size", 1),
                   "dataset_config": str(dataset_file), "sdxl": model == "sdxl",
                   "sample_prompts": rendered.sample_prompts.rstrip("\n"),
                   "network_weights": str(network_weights) if network_weights else ""})
    leftovers: list[str] = []
    for key, value in flat.items():
        field = RENAMED.get(key, key)
        if key in DERIVED:
            continue
        if field in GUI_FIELDS:
            fields[field] = value
        elif (argument := _argument(key, value)) is not None:
            fields["additional_parameters"] = f"{fields['additional_parameters']} {argument}".strip()
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
    warmup = flat.get("lr_warmup_steps") or 0
    if isinstance(warmup, float) and warmup < 1:
        fields["lr_warmup"] = round(warmup * 100, 6)  # the GUI's percent of the total steps: the same ratio
    elif warmup:
        unknown.append("lr_warmup_steps")  # with a dataset config and max_train_steps 0 the GUI drops a step count
    for key in ("num_cpu_threads_per_process", "num_processes", "num_machines", "dynamo_backend", "gpu_ids",
                "main_process_port"):
        if key in accelerate:
            fields[key] = accelerate[key]
    rest = {key: value for key, value in accelerate.items() if key not in fields and key != "mixed_precision"}
    fields["extra_accelerate_launch_args"] = " ".join(accelerate_options(rest))
    return GuiConfig({key: fields[key] for key in sorted(fields)}, tuple(leftovers + unknown))


def write_gui_config(folder: Path, config: GuiConfig) -> Path:
    """`<stage folder>/kohya_ss.json`: the LoRA tab's Configuration → Load opens it."""
    target = folder / "kohya_ss.json"
    write_text_if_changed(target, json.dumps(config.fields, indent=2, ensure_ascii=False) + "\n")
    return target
