"""A seeded, randomly initialised Anima set that sd-scripts' `anima_train_network.py` can train on a CPU: for tests.

`build_tiny_anima(dest, sd_scripts)` writes, under `dest`:
- `anima.safetensors`: the DiT at full size, as sd-scripts fixes it (`anima_utils.load_anima_model` builds 2048
  channels, 28 blocks, 16 heads and the LLM adapter, and refuses a checkpoint with any key missing): 2.09 B
  parameters, stored in bf16 (4.2 GB), with ComfyUI's `net.` prefix as the official file has it;
- `qwen3/`: a Qwen3 text encoder folder (`config.json`, weights and the checkout's own Qwen3 tokenizer files from
  `configs/qwen3_06b/`), the width the DiT's cross-attention reads (hidden 1024) with 1 layer, 2 heads and a
  256-wide MLP instead of 28 layers; the vocabulary stays the real 151,936 since the real tokenizer's ids reach it;
- `qwen_image_vae.safetensors`: the Qwen-Image VAE, whose size `qwen_image_autoencoder_kl.load_vae` fixes.
The T5 tokenizer is the checkout's `configs/t5_old/` (the trainer's default).

The DiT's tensors are generated one at a time and streamed into the file (weights N(0, 0.02), norms 1, biases 0),
so building holds one tensor at a time, not the model. The build runs in a subprocess (it imports sd-scripts'
model classes); `python tests/tiny_anima.py SD_SCRIPTS DEST` runs it directly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

FORMAT_VERSION = 1
MARKER = "tiny_anima.json"
QWEN3 = {"num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 256}
TOKENIZER_FILES = ("merges.txt", "tokenizer_config.json", "vocab.json")
DIT_STD = 0.02


@dataclass(frozen=True)
class TinyAnima:
    dit: Path
    text_encoder: Path  # a Qwen3 folder
    vae: Path


def _layout(dest: Path) -> TinyAnima:
    return TinyAnima(dit=dest / "anima.safetensors", text_encoder=dest / "qwen3",
                     vae=dest / "qwen_image_vae.safetensors")


def _marker(seed: int) -> dict[str, object]:
    return {"format": FORMAT_VERSION, "seed": seed, "qwen3": QWEN3}


def _is_complete(dest: Path, seed: int) -> bool:
    try:
        return json.loads((dest / MARKER).read_text(encoding="utf-8")) == _marker(seed)
    except (OSError, ValueError):
        return False


def build_tiny_anima(dest: Path, sd_scripts: Path, seed: int = 0) -> TinyAnima:
    """Build the set under `dest` unless a complete build with this seed is there (4.5 GB on disk)."""
    dest = Path(dest).resolve()
    if _is_complete(dest, seed):
        return _layout(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        subprocess.run([sys.executable, __file__, str(sd_scripts), str(tmp), str(seed)], check=True,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
        (tmp / MARKER).write_text(json.dumps(_marker(seed)), encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _layout(dest)


def dit_config(sd_scripts: Path) -> dict[str, object]:
    """The DiT's config as load_anima_model has it (a literal inside that function: read it from there)."""
    import inspect

    from library import anima_utils

    source = inspect.getsource(anima_utils.load_anima_model)
    start = source.index("dit_config = {")
    scope = {"attn_mode": "torch", "split_attn": False}
    exec(source[start:source.index("}", start) + 1].strip(), {}, scope)  # a dict literal of constants
    return scope["dit_config"]


def _write_dit(path: Path, sd_scripts: Path, seed: int) -> None:
    import torch
    from accelerate import init_empty_weights
    from library import anima_models

    from onetwo.kohya.safetensors_header import serialise_header

    with init_empty_weights():
        model = anima_models.Anima(**dit_config(sd_scripts))
    # buffers the model computes itself (rope tables): load_anima_model lets them be missing
    skip = ("seq", "dim_spatial_range", "dim_temporal_range", "inv_freq")
    shapes = {key: list(value.shape) for key, value in model.state_dict().items()
              if not any(part in key for part in skip)}
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key, shape in shapes.items():
        size = 2 * int(torch.Size(shape).numel())
        header[f"net.{key}"] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    generator = torch.Generator().manual_seed(seed)
    with path.open("wb") as handle:
        handle.write(serialise_header(header))
        for key, shape in shapes.items():
            if len(shape) >= 2:
                tensor = torch.randn(shape, generator=generator) * DIT_STD
            elif "norm" in key or key.endswith("scale"):
                tensor = torch.ones(shape)
            else:
                tensor = torch.zeros(shape)
            handle.write(tensor.to(torch.bfloat16).reshape(-1).view(torch.uint8).numpy().tobytes())


def _write_qwen3(folder: Path, sd_scripts: Path, seed: int) -> None:
    import torch
    import transformers

    configs = sd_scripts / "configs" / "qwen3_06b"
    config = transformers.Qwen3Config.from_pretrained(configs, local_files_only=True, **QWEN3)
    torch.manual_seed(seed)
    model = transformers.Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(configs / name, folder / name)


def _write_vae(path: Path, seed: int) -> None:
    import torch
    from library import qwen_image_autoencoder_kl
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    source = Path(qwen_image_autoencoder_kl.__file__)
    # load_vae builds the model from this config literal, then loads a file: save a freshly built one's weights
    text = source.read_text(encoding="utf-8")
    start = text.index('VAE_CONFIG_JSON = """') + len('VAE_CONFIG_JSON = """')
    config = json.loads(text[start:text.index('"""', start)])
    vae = qwen_image_autoencoder_kl.AutoencoderKLQwenImage(
        base_dim=config["base_dim"], z_dim=config["z_dim"], dim_mult=config["dim_mult"],
        num_res_blocks=config["num_res_blocks"], attn_scales=config["attn_scales"],
        temperal_downsample=config["temperal_downsample"], dropout=config["dropout"],
        latents_mean=config["latents_mean"], latents_std=config["latents_std"])
    save_file({key: value.contiguous() for key, value in vae.state_dict().items()}, str(path))


def _build(sd_scripts: Path, dest: Path, seed: int) -> None:
    sys.path.insert(0, str(sd_scripts))
    layout = _layout(dest)
    _write_qwen3(layout.text_encoder, sd_scripts, seed)
    _write_vae(layout.vae, seed)
    _write_dit(layout.dit, sd_scripts, seed)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    _build(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) == 4 else 0)
