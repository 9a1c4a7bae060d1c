"""What the base model is, read without torch: a .safetensors header, a .ckpt's pickle (opcodes, never unpickled), a
diffusers folder's JSON. `check` compares it with what the project says before any model load."""

from __future__ import annotations

import json
import pickletools
import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onetwo.kohya.families import FAMILIES, family_of_kind
from onetwo.kohya.safetensors_header import HeaderError, read_header

MAX_PICKLE_BYTES = 64 << 20
UNET = "model.diffusion_model."
# The text encoder of each family in the single-file (original LDM) layout sd-scripts loads.
FAMILY_MARKERS = (("sdxl", "conditioner.embedders."), ("sd2", "cond_stage_model.model."),
                  ("sd1", "cond_stage_model.transformer."))
# Cross-attention width of the UNet: what the text encoder hands it.
CONTEXT_FAMILY = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
CROSS_ATTENTION_KEY = f"{UNET}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
LORA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
LORA_PARTS = (".hada_w1_a", ".lokr_w1", ".lora_down.", ".lora_up.", ".lora_A.", ".lora_B.")
ANIMA_DIT_PARTS = ("x_embedder.", "t_embedder.", "blocks.0.self_attn.", "blocks.0.cross_attn.")
QWEN_VAE_PARTS = ("encoder.", "decoder.", "conv1.", "conv2.", "quant_conv.", "post_quant_conv.")
FAMILY_NAMES = {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL"}
# ComfyUI's SDXL model_type (comfy/supported_models.py): a `v_pred` tensor in the state dict makes it a v-prediction
# model, and `ztsnr` beside it zero terminal SNR; each marker, the sd-scripts setting that trains what it implies.
PREDICTION_MARKERS = (("v_pred", "v_parameterization"), ("ztsnr", "zero_terminal_snr"))


@dataclass(frozen=True)
class ModelKind:
    """kind: sd1, sd2, sdxl; lora, vae, not_a_model, truncated; unchecked (a format that cannot be read safely)."""

    kind: str
    detail: str
    markers: tuple[str, ...] = ()  # the PREDICTION_MARKERS keys the state dict holds
    adapter: bool = False  # an Anima DiT with its LLM adapter inside


def prediction_settings(markers: tuple[str, ...]) -> dict[str, bool]:
    """What sd-scripts must be told to train the target a marked SDXL checkpoint predicts; ComfyUI reads `ztsnr`
    only beside `v_pred`."""
    if "v_pred" not in markers:
        return {}
    return {setting: True for marker, setting in PREDICTION_MARKERS if marker in markers}


def model_settings(path: Path, project_model: str) -> tuple[dict[str, bool], str]:
    """(the settings the base model's markers imply, the markers as words): empty where it has none, is not an SDXL
    checkpoint for an SDXL project, or cannot be read (check reports that)."""
    if not FAMILIES[project_model].prediction_markers or not path.is_file():
        return {}, ""
    try:
        found = classify(path)
    except OSError:
        return {}, ""
    settings = prediction_settings(found.markers) if found.kind in FAMILIES[project_model].base_kinds else {}
    return settings, " and ".join(f"{marker!r}" for marker in found.markers)


def classify_anima_parts(keys: list[str], shapes: dict[str, list[int]]) -> ModelKind | None:
    """An Anima DiT (with or without ComfyUI's `net.` prefix), a Qwen3 text encoder or a Qwen-Image VAE, by the
    module names sd-scripts loads them with (library/anima_models.py, anima_utils.load_qwen3_text_encoder,
    qwen_image_autoencoder_kl)."""
    names = {key.removeprefix("net.") for key in keys}
    if all(any(name.startswith(part) for name in names) for part in ANIMA_DIT_PARTS):
        prefix = " with ComfyUI's net. prefix" if all(key.startswith("net.") for key in keys) else ""
        adapter = any(name.startswith("llm_adapter.") for name in names)
        blocks = len({name.split(".")[1] for name in names if name.startswith("blocks.")})
        return ModelKind("anima_dit", f"an Anima DiT ({blocks} blocks{prefix}, LLM adapter "
                                      f"{'inside' if adapter else 'not inside'})", adapter=adapter)
    plain = {key.removeprefix("model.") for key in keys}
    if "embed_tokens.weight" in plain and any(".self_attn.q_norm." in key for key in plain):
        layers = len({key.split(".")[1] for key in plain if key.startswith("layers.")})
        return ModelKind("qwen3", f"a Qwen3 text encoder ({layers} layers)")
    if keys and all(key.startswith(QWEN_VAE_PARTS) for key in keys) and (
            any(key.startswith(("encoder.downsamples.", "decoder.upsamples.")) for key in keys)
            or any(len(shape) == 5 for shape in shapes.values())):
        return ModelKind("qwen_image_vae", "a Qwen-Image VAE (3-D causal convolutions)")
    return None


def classify_keys(keys: Iterable[str], shapes: dict[str, list[int]] | None = None) -> ModelKind:
    """The family of a state dict from its key names (and the cross-attention shape, where a header gives it)."""
    keys = list(keys)
    if found := classify_anima_parts(keys, shapes or {}):
        return found
    lora = [key for key in keys if key.startswith(LORA_PREFIXES) or any(part in key for part in LORA_PARTS)]
    if lora and len(lora) * 2 >= len(keys):
        algo = "LoHa" if any(".hada_" in key for key in lora) else "LoKr" if any(".lokr_" in key for key in lora) \
            else "LoRA"
        return ModelKind("lora", f"a {algo} network: {len(lora)} module tensors such as {lora[0]!r}")
    if any(key.startswith(UNET) for key in keys):
        for family, marker in FAMILY_MARKERS:
            if any(key.startswith(marker) for key in keys):
                return ModelKind(family, f"an {FAMILY_NAMES[family]} checkpoint ({marker}* text encoder keys)")
        shape = (shapes or {}).get(CROSS_ATTENTION_KEY)
        if shape and len(shape) == 2 and shape[1] in CONTEXT_FAMILY:
            family = CONTEXT_FAMILY[shape[1]]
            return ModelKind(family, f"an {FAMILY_NAMES[family]} UNet (cross-attention width {shape[1]})")
        if any(key.startswith(f"{UNET}label_emb.") for key in keys):
            return ModelKind("sdxl", "an SDXL UNet (label_emb keys)")
        return ModelKind("not_a_model", "a UNet without the text encoder sd-scripts needs")
    if keys and all(key.startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")) for key in keys):
        return ModelKind("vae", "a VAE alone")
    sample = ", ".join(repr(key) for key in keys[:3]) or "no tensors"
    return ModelKind("not_a_model", f"no {UNET}* keys of a Stable Diffusion checkpoint; first keys: {sample}")


def read_safetensors(path: Path) -> ModelKind:
    size = path.stat().st_size
    try:
        layout = read_header(path)
    except HeaderError as exc:
        return ModelKind("truncated" if exc.truncated else "not_a_model", str(exc))
    if layout.data_end > size:
        return ModelKind("truncated", f"its tensors end at byte {layout.data_end}, the file has {size}")
    tensors = layout.tensors
    found = classify_keys(tensors, {key: value.get("shape") for key, value in tensors.items()})
    markers = tuple(marker for marker, _ in PREDICTION_MARKERS if marker in tensors)
    return ModelKind(found.kind, found.detail, markers) if markers else found


def pickle_strings(data: bytes) -> list[str]:
    """Every string constant in a pickle, by walking its opcodes: nothing is executed or imported."""
    strings: list[str] = []
    for opcode, arg, _ in pickletools.genops(data):
        if isinstance(arg, str) and opcode.name not in ("GLOBAL", "INST"):
            strings.append(arg)
    return strings


def read_checkpoint_zip(path: Path) -> ModelKind:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
            if not names:
                return ModelKind("not_a_model", "a zip file without the data.pkl of a torch checkpoint")
            info = archive.getinfo(names[0])
            if info.file_size > MAX_PICKLE_BYTES:
                return ModelKind("unchecked", f"its data.pkl is {info.file_size} bytes, too large to read")
            data = archive.read(info)
    except zipfile.BadZipFile as exc:
        return ModelKind("truncated", f"a zip without its end record ({exc}): the download stopped early")
    except (OSError, EOFError) as exc:
        return ModelKind("truncated", f"cannot read its data.pkl ({exc})")
    try:
        strings = pickle_strings(data)
    except (ValueError, IndexError, struct.error) as exc:
        return ModelKind("not_a_model", f"its data.pkl is not a readable pickle ({exc})")
    found = classify_keys(string for string in strings if "." in string or string.startswith(LORA_PREFIXES))
    markers = tuple(marker for marker, _ in PREDICTION_MARKERS if marker in strings)
    return ModelKind(found.kind, found.detail, markers) if markers else found


def read_diffusers(folder: Path) -> ModelKind:
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        return ModelKind("not_a_model", "a folder without the model_index.json of a diffusers model")
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
        unet_file = folder / "unet" / "config.json"
        unet = json.loads(unet_file.read_text(encoding="utf-8")) if unet_file.is_file() else {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return ModelKind("not_a_model", f"its model_index.json or unet/config.json cannot be read ({exc})")
    pipeline = str(index.get("_class_name", "")) if isinstance(index, dict) else ""
    if not isinstance(unet, dict) or "unet" not in index:
        return ModelKind("not_a_model", f"a diffusers {pipeline or 'folder'} without a UNet")
    context = unet.get("cross_attention_dim")
    if "XL" in pipeline or context == 2048 or unet.get("addition_embed_type") == "text_time":
        return ModelKind("sdxl", f"an SDXL diffusers {pipeline or 'folder'}")
    family = CONTEXT_FAMILY.get(context, "sd1") if isinstance(context, int) else "sd1"
    return ModelKind(family, f"an {FAMILY_NAMES[family]} diffusers {pipeline or 'folder'} (cross-attention {context})")


def read_model_folder(folder: Path) -> ModelKind:
    """A Hugging Face folder without a model_index.json: a Qwen3 model or a T5 tokenizer, by its config.json."""
    config_file = folder / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return ModelKind("not_a_model", f"its config.json cannot be read ({exc})")
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type == "qwen3":
        return ModelKind("qwen3", "a Qwen3 model folder (config.json model_type qwen3)")
    if (folder / "spiece.model").is_file() or (model_type == "t5" and (folder / "tokenizer.json").is_file()):
        return ModelKind("t5_tokenizer", "a T5 tokenizer folder")
    return ModelKind("not_a_model", f"a folder with neither model_index.json nor a Qwen3 or T5 config.json"
                                    f"{f' (model_type {model_type!r})' if model_type else ''}")


def classify(path: Path) -> ModelKind:
    """What `path` holds, by its content (not its suffix)."""
    if path.is_dir():
        return read_diffusers(path) if (path / "model_index.json").is_file() else read_model_folder(path)
    with path.open("rb") as handle:
        head = handle.read(9)
    if not head:
        return ModelKind("truncated", "an empty file")
    if head[:2] == b"PK":
        return read_checkpoint_zip(path)
    if head[:1] == b"\x80":
        return ModelKind("unchecked", "a legacy (non-zip) torch pickle, which cannot be read without unpickling it")
    if head[8:9] == b"{" or path.suffix.lower() == ".safetensors":
        return read_safetensors(path)
    return ModelKind("not_a_model", "neither safetensors, a torch checkpoint nor a diffusers folder")


def base_model_problems(path: Path, project_model: str, flat_config: dict[str, Any] | None = None
                        ) -> tuple[list[str], list[str]]:
    """(problems, notes) about `project.base_model` for a project trained as `project_model` (sd1 or sdxl)."""
    if not path.exists():
        return [], []  # launch.preflight reports a missing file
    try:
        found = classify(path)
    except OSError as exc:
        return [f"{path}: project.base_model cannot be read ({exc}); check the path and its permissions"], []
    fix_path = "point project.base_model at a Stable Diffusion checkpoint (.safetensors or .ckpt) or a diffusers folder"
    if found.kind == "truncated":
        return [f"{path}: project.base_model is truncated ({found.detail}); download it again"], []
    if found.kind == "lora":
        return [f"{path}: project.base_model is a LoRA ({found.detail}), not a base model; {fix_path} (the one "
                "the LoRA was made for). To continue training a LoRA, use stage 2's --from"], []
    if found.kind in ("vae", "not_a_model"):
        return [f"{path}: project.base_model is not a model sd-scripts can train on ({found.detail}); {fix_path}"], []
    if found.kind == "unchecked":
        return [], [f"{path}: the base model cannot be checked ({found.detail}); sd-scripts will load it as it is"]
    wanted = family_of_kind(found.kind)
    if wanted is None or wanted.name != project_model:
        setting = f"set project.model = {wanted.name!r} in [project], or " if wanted else ""
        return [f"{path}: project.base_model is {found.detail}, but project.model is {project_model!r}; "
                f"{setting}point base_model at an {FAMILIES[project_model].label} checkpoint"], []
    if found.kind == "anima_dit" and not found.adapter:
        return [f"{path}: project.base_model is {found.detail}; the pinned anima_train_network.py loads the LLM "
                "adapter only from the DiT file (llm_adapter.* keys; its --llm_adapter_path is not read): point "
                "base_model at the full Anima DiT"], []
    v2 = bool((flat_config or {}).get("v2"))
    if found.kind == "sd2" and not v2:
        return [f"{path}: project.base_model is {found.detail}; set v2 = true in [training] (and "
                "v_parameterization = true for a 768-v model), or point base_model at an SD1 checkpoint"], []
    if found.kind == "sd1" and v2:
        return [f"{path}: project.base_model is {found.detail}, but the training settings say v2 = true; remove v2 "
                "(and v_parameterization) from the project"], []
    marked = f", marked {' and '.join(repr(marker) for marker in found.markers)}" if found.markers else ""
    return [], [f"base model: {found.detail}{marked}"]


def model_file_problems(project_model: str, files: dict[str, Path]) -> tuple[list[str], list[str]]:
    """(problems, notes) about the family's other files ([project] text_encoder, vae, …): each must be what its
    slot names, told from its header or config, never loaded."""
    problems: list[str] = []
    notes: list[str] = []
    for slot in FAMILIES[project_model].files:
        path = files.get(slot.key)
        if path is None:
            continue
        if not path.exists():
            problems.append(f"{path}: project.{slot.key} ({slot.what}) not found; check the path")
            continue
        try:
            found = classify(path)
        except OSError as exc:
            problems.append(f"{path}: project.{slot.key} cannot be read ({exc}); check the path and its permissions")
            continue
        if found.kind == "unchecked":
            notes.append(f"{path}: project.{slot.key} cannot be checked ({found.detail})")
        elif found.kind not in slot.kinds:
            problems.append(f"{path}: project.{slot.key} is {found.detail}, not {slot.what}; point it at "
                            f"{slot.what}")
        else:
            notes.append(f"{slot.key}: {found.detail}")
    return problems, notes
