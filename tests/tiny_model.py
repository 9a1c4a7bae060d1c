"""A seeded, randomly initialised SD1.x model small enough to train on a CPU: for tests and `make demo`.

`build_tiny_sd(dest)` writes a diffusers `StableDiffusionPipeline` directory that kohya-ss sd-scripts'
`train_network.py` accepts as `pretrained_model_name_or_path`, and a tokenizer cache to pass as its
`tokenizer_cache_dir` (sd-scripts looks for `<cache>/openai_clip-vit-large-patch14`, so no download is needed).

The UNet is full size (sd-scripts' own UNet class fixes its channels) and the text encoder has SD1's shape (CLIP
ViT-L/14's: 12 layers, width 768, MLP 3072, 12 heads), so a LoRA trained on it has the module names and shapes of one
trained on a real SD1 checkpoint; the VAE has four 32-channel blocks and the tokenizer a byte-level vocabulary with
no merges. torch, diffusers and transformers are
imported inside the functions, so importing this module needs none of them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT_VERSION = 2  # 2: SD1's 12-layer text encoder
MARKER = "tiny_sd.json"
TOKENIZER_NAME = "openai_clip-vit-large-patch14"  # sd-scripts: model id "openai/clip-vit-large-patch14", "/" -> "_"
MAX_LENGTH = 77


@dataclass(frozen=True)
class TinySD:
    model_dir: Path  # diffusers StableDiffusionPipeline folder
    tokenizer_cache_dir: Path  # holds TOKENIZER_NAME


def _layout(dest: Path) -> TinySD:
    return TinySD(model_dir=dest / "model", tokenizer_cache_dir=dest / "tokenizers")


def _is_complete(dest: Path, seed: int) -> bool:
    try:
        marker = json.loads((dest / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker == {"format": FORMAT_VERSION, "seed": seed}


def build_tiny_sd(dest: Path, seed: int = 0) -> TinySD:
    """Build the model under `dest` unless a complete build with this seed is there (~35 s on 2 cores, 1.9 GB)."""
    dest = Path(dest).resolve()
    if _is_complete(dest, seed):
        return _layout(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        _build(_layout(tmp), seed)
        _write_atomic(tmp / MARKER, json.dumps({"format": FORMAT_VERSION, "seed": seed}))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _layout(dest)


def _write_atomic(path: Path, text: str) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)


def _build(layout: TinySD, seed: int) -> None:
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = make_byte_tokenizer(layout.tokenizer_cache_dir / TOKENIZER_NAME)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768,
        attention_head_dim=8,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=MAX_LENGTH,
            projection_dim=768,
            hidden_act="quick_gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 32, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=512,
    )
    scheduler = PNDMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(torch.float16)
    pipe.save_pretrained(layout.model_dir, safe_serialization=True)


def make_byte_tokenizer(path: Path) -> Any:
    """A CLIP tokenizer whose vocabulary is the 256 byte characters, their `</w>` forms and the two special tokens."""
    from transformers import CLIPTokenizer
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    path.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = path / "vocab.json", path / "merges.txt"
    vocab_file.write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=MAX_LENGTH)
    tokenizer.save_pretrained(path)
    return tokenizer


def main() -> None:
    import sys

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m tests.tiny_model DEST")
    tiny = build_tiny_sd(Path(sys.argv[1]))
    print(f"model: {tiny.model_dir}\ntokenizer_cache_dir: {tiny.tokenizer_cache_dir}")


if __name__ == "__main__":
    main()
