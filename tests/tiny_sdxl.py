"""A seeded, randomly initialised SDXL model that sd-scripts' `sdxl_train_network.py` can train on a CPU: for tests.

`build_tiny_sdxl(dest)` writes a diffusers `StableDiffusionXLPipeline` folder to pass as
`pretrained_model_name_or_path`, and a tokenizer cache to pass as `tokenizer_cache_dir` (sd-scripts looks for
`<cache>/openai_clip-vit-large-patch14` and `<cache>/laion_CLIP-ViT-bigG-14-laion2B-39B-b160k`).

What is full size, and why:
- the UNet: sd-scripts converts whatever UNet it loads into its own `SdxlUNet2DConditionModel`, whose shape is
  fixed (2.57 B parameters; stored in fp16, 5.1 GB);
- the first text encoder (CLIP-L's 12 layers and widths; 85 M parameters with the small vocabulary): sd-scripts
  takes its 11th hidden state;
- the widths of the second (bigG: 1280 hidden, 5120 MLP, 1280 projection): the UNet's context (768 + 1280) and
  pooled input depend on them. Its depth is free, since sd-scripts takes the penultimate hidden state: 2 layers
  here instead of 32 (42 M parameters instead of 695 M), so its LoHa has 12 modules instead of 192.
The VAE has four 32-channel blocks (8x downsampling, 4 latent channels) and the tokenizers a byte-level
vocabulary. Weights are stored in fp16, the UNet in 1 GB shards. Measured with sd-scripts' own SDXL loader
(`sdxl_train_util._load_target_model`, fp32 weights, 2 cores): this folder peaks at 11.4 GiB; the same folder with
the UNet in one file at 15.6 GiB (the whole fp16 file is held while the fp32 weights fill); a single-file
checkpoint at 19.6 GiB (its loader builds both text encoders at full size, and holds the file too).
torch, diffusers and transformers are imported inside the functions.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.tiny_model import MAX_LENGTH, make_byte_tokenizer  # the SD1 tiny model's byte-level tokenizer

FORMAT_VERSION = 1
MARKER = "tiny_sdxl.json"
# sd-scripts' sdxl_train_util.TOKENIZER1_PATH / TOKENIZER2_PATH with "/" -> "_"
TOKENIZER_NAMES = ("openai_clip-vit-large-patch14", "laion_CLIP-ViT-bigG-14-laion2B-39B-b160k")
TEXT_ENCODER_2_LAYERS = 2
# Loading converts the fp16 files to fp32 weights: in shards, only one shard's fp16 copy is held at a time.
UNET_SHARD = "1GB"

# diffusers' config of the SDXL base 1.0 UNet, as sd-scripts' sdxl_model_util.DIFFUSERS_SDXL_UNET_CONFIG has it.
SDXL_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,  # pooled bigG output (1280) + 6 size embeddings of 256
}


@dataclass(frozen=True)
class TinySDXL:
    model_dir: Path  # diffusers StableDiffusionXLPipeline folder
    tokenizer_cache_dir: Path  # holds both TOKENIZER_NAMES


def _layout(dest: Path) -> TinySDXL:
    return TinySDXL(model_dir=dest / "model", tokenizer_cache_dir=dest / "tokenizers")


def _marker(seed: int) -> dict[str, int]:
    return {"format": FORMAT_VERSION, "seed": seed, "text_encoder_2_layers": TEXT_ENCODER_2_LAYERS}


def _is_complete(dest: Path, seed: int) -> bool:
    try:
        return json.loads((dest / MARKER).read_text(encoding="utf-8")) == _marker(seed)
    except (OSError, ValueError):
        return False


def build_tiny_sdxl(dest: Path, seed: int = 0) -> TinySDXL:
    """Build the model under `dest` unless a complete build with this seed is there (~50 s, 7 GiB of memory, 5.1 GiB
    on disk)."""
    from onetwo.fsutil import write_text_atomic

    dest = Path(dest).resolve()
    if _is_complete(dest, seed):
        return _layout(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        _build(_layout(tmp), seed)
        write_text_atomic(tmp / MARKER, json.dumps(_marker(seed)))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _layout(dest)


def _build(layout: TinySDXL, seed: int) -> None:
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizers = [make_byte_tokenizer(layout.tokenizer_cache_dir / name) for name in TOKENIZER_NAMES]
    special = {"bos_token_id": tokenizers[0].bos_token_id, "eos_token_id": tokenizers[0].eos_token_id,
               "pad_token_id": tokenizers[0].pad_token_id, "vocab_size": len(tokenizers[0]),
               "max_position_embeddings": MAX_LENGTH}
    torch.manual_seed(seed)
    # Built in fp16 where it is big: an fp32 UNet would need 10 GiB here, for weights stored as fp16 anyway.
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)
    try:
        unet = UNet2DConditionModel(**SDXL_UNET)
    finally:
        torch.set_default_dtype(default_dtype)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, projection_dim=768,
        hidden_act="quick_gelu", **special))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(
        hidden_size=1280, intermediate_size=5120, num_hidden_layers=TEXT_ENCODER_2_LAYERS, num_attention_heads=20,
        projection_dim=1280, hidden_act="gelu", **special))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(32, 32, 32, 32), layers_per_block=1,
        latent_channels=4, norm_num_groups=32, sample_size=1024, scaling_factor=0.13025)
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        timestep_spacing="leading", steps_offset=1)
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizers[0],
        tokenizer_2=tokenizers[1], unet=unet, scheduler=scheduler)
    pipe.to(torch.float16)
    pipe.save_pretrained(layout.model_dir, safe_serialization=True, max_shard_size=UNET_SHARD)


def main() -> None:
    import sys

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m tests.tiny_sdxl DEST")
    tiny = build_tiny_sdxl(Path(sys.argv[1]))
    print(f"model: {tiny.model_dir}\ntokenizer_cache_dir: {tiny.tokenizer_cache_dir}")


if __name__ == "__main__":
    main()
