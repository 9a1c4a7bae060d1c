"""Tiny files shaped like base models and LoRAs, built at test time without torch: the tensors are a few zero bytes,
the key names and shapes are those of the real thing."""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from pathlib import Path

UNET = "model.diffusion_model."
SD1_KEYS = [f"{UNET}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", f"{UNET}out.2.weight",
            "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
            "first_stage_model.decoder.conv_in.weight"]
SD2_KEYS = [f"{UNET}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", f"{UNET}out.2.weight",
            "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight",
            "first_stage_model.decoder.conv_in.weight"]
SDXL_KEYS = [f"{UNET}label_emb.0.0.weight", f"{UNET}out.2.weight",
             "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
             "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight",
             "first_stage_model.decoder.conv_in.weight"]
LOHA_KEYS = [f"lora_unet_down_blocks_0_attentions_0_proj_in.{part}" for part in
             ("alpha", "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")]
LOKR_KEYS = [f"lora_te_text_model_encoder_layers_0_mlp_fc1.{part}" for part in ("alpha", "lokr_w1", "lokr_w2")]
VAE_KEYS = ["encoder.conv_in.weight", "decoder.conv_out.weight", "quant_conv.weight"]
OTHER_KEYS = ["fc1.weight", "fc1.bias", "head.weight"]


def write_safetensors(path: Path, keys: list[str], shapes: dict[str, list[int]] | None = None,
                      cut: int = 0) -> Path:
    """A valid safetensors file (each tensor one fp16 zero unless `shapes` says otherwise), less the last `cut`
    bytes."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key in keys:
        shape = (shapes or {}).get(key, [1])
        size = 2
        for dim in shape:
            size *= dim
        header[key] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    data = struct.pack("<Q", len(text)) + text + bytes(offset)
    path.write_bytes(data[:len(data) - cut])
    return path


def write_torch_zip(path: Path, keys: list[str], cut: int = 0) -> Path:
    """The layout torch.save writes (a zip holding archive/data.pkl), here with plain values instead of tensors."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"state_dict": {key: 0 for key in keys}}, protocol=2))
        archive.writestr("archive/version", "3\n")
    if cut:
        data = path.read_bytes()
        path.write_bytes(data[:len(data) - cut])
    return path


def write_diffusers(folder: Path, pipeline: str, cross_attention_dim: int) -> Path:
    (folder / "unet").mkdir(parents=True, exist_ok=True)
    index = {"_class_name": pipeline, "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    (folder / "model_index.json").write_text(json.dumps(index), encoding="utf-8")
    (folder / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": cross_attention_dim}),
                                                 encoding="utf-8")
    return folder


# Anima (sd-scripts' library/anima_models.py, anima_utils, qwen_image_autoencoder_kl): a few keys of each file.
ANIMA_DIT_KEYS = ["x_embedder.proj.1.weight", "t_embedder.1.linear_1.weight", "blocks.0.self_attn.q_proj.weight",
                  "blocks.0.cross_attn.k_proj.weight", "blocks.27.mlp.layer1.weight", "final_layer.linear.weight"]
ANIMA_ADAPTER_KEYS = ["llm_adapter.embed.weight", "llm_adapter.out_proj.weight"]
QWEN3_KEYS = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
              "model.layers.0.self_attn.q_norm.weight", "model.norm.weight"]
QWEN_VAE_KEYS = ["conv1.weight", "conv2.weight", "encoder.conv1.weight", "encoder.downsamples.0.residual.0.gamma",
                 "decoder.conv1.weight", "decoder.upsamples.0.residual.0.gamma"]
QWEN_VAE_DIFFUSERS = {"encoder.conv_in.weight": [96, 3, 3, 3, 3], "decoder.conv_in.weight": [384, 16, 3, 3, 3],
                      "quant_conv.weight": [32, 32, 1, 1, 1]}


def write_anima_files(folder: Path, comfy: bool = False, adapter: bool = True) -> dict[str, Path]:
    """Stand-ins for the files an Anima project names: DiT, Qwen3 (a file), Qwen-Image VAE, T5 tokenizer folder."""
    folder.mkdir(parents=True, exist_ok=True)
    dit = ANIMA_DIT_KEYS + (ANIMA_ADAPTER_KEYS if adapter else [])
    files = {
        "base_model": write_safetensors(folder / "anima.safetensors", [f"net.{key}" if comfy else key for key in dit]),
        "text_encoder": write_safetensors(folder / "qwen3.safetensors", QWEN3_KEYS),
        "vae": write_safetensors(folder / "qwen_image_vae.safetensors", QWEN_VAE_KEYS),
        "t5_tokenizer": folder / "t5",
    }
    files["t5_tokenizer"].mkdir(exist_ok=True)
    (files["t5_tokenizer"] / "spiece.model").write_bytes(b"\0")
    return files
