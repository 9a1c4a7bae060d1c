"""What a LoHa trained on SD1 holds, and how the generation UIs apply it, written independently of sd-scripts and
LyCORIS so the tests can hold the trained files against them.

- `expected_shapes()`: every tensor a LoHa of SD1 has, named as kohya names modules (`lora_unet_` / `lora_te_` + the
  diffusers `UNet2DConditionModel` / transformers `CLIPTextModel` module path with `.` → `_`), derived from the
  module trees of SD1's UNet and CLIP ViT-L/14 text encoder (built on the meta device: no memory, no download).
- `ui_merge()`: the merge ComfyUI, Forge and AUTOMATIC1111 do, `W += m · alpha/dim · (w1_a @ w1_b) ⊙ (w2_a @ w2_b)`.
- Run as a program, it merges a LoHa into a model folder both ways (the UIs' formula, LyCORIS's forward hooks) and
  writes the relative differences of the UNet's and the text encoder's outputs as JSON; it loads a full UNet, so
  the tests run it in a subprocess:

    python tests/sd1_lora.py compare LORA MODEL_DIR RESULT.json MULTIPLIER
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

# SD1's UNet as its published diffusers config sets it (everything else is diffusers' default).
SD1_UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 768, "attention_head_dim": 8,
}
# SD1's text encoder: CLIP ViT-L/14's text tower.
CLIP_L = {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
          "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu"}
# Where LyCORIS's kohya network puts modules: every Linear and 1x1 convolution inside these blocks (3x3 convolutions
# only with conv_dim > 0), and these named modules.
UNET_BLOCKS = ("Transformer2DModel", "ResnetBlock2D", "Downsample2D", "Upsample2D")
UNET_NAMED = ("time_embedding.linear_1", "time_embedding.linear_2")
TEXT_ENCODER_BLOCKS = ("CLIPAttention", "CLIPSdpaAttention", "CLIPMLP")
LOHA = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")


def kohya_name(prefix: str, path: str) -> str:
    return f"{prefix}_{path}".replace(".", "_")


def is_target(module: Any) -> bool:
    import torch

    if isinstance(module, torch.nn.Linear):
        return True
    return isinstance(module, torch.nn.Conv2d) and tuple(module.kernel_size) == (1, 1)


def target_paths(root: Any, blocks: tuple[str, ...], named: tuple[str, ...] = ()) -> list[str]:
    """Module paths of the Linear and 1x1 convolution layers a kohya LoHa of dim > 0, conv_dim 0, trains."""
    modules = dict(root.named_modules())
    found: list[str] = []
    for path, module in modules.items():
        inside = any(type(modules[parent]).__name__ in blocks for parent in ancestors(path))
        if is_target(module) and (inside or path in named) and path not in found:
            found.append(path)
    return found


def ancestors(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts))]


def sd1_modules() -> dict[str, tuple[int, ...]]:
    """Kohya name → weight shape of every module a LoHa of SD1 trains: 230 in the UNet, 72 in the text encoder."""
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD1_UNET)
        text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_L))
    found = {}
    for prefix, root, blocks, named in (("lora_unet", unet, UNET_BLOCKS, UNET_NAMED),
                                        ("lora_te", text_encoder, TEXT_ENCODER_BLOCKS, ())):
        modules = dict(root.named_modules())
        for path in target_paths(root, blocks, named):
            found[kohya_name(prefix, path)] = tuple(modules[path].weight.shape)
    return found


def expected_shapes(dim: int) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape of a LoHa of rank `dim` on SD1: `alpha` (a scalar) and the four factors, each
    (out, dim) for *_a and (dim, in · kernel) for *_b."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, weight in sd1_modules().items():
        out_features, in_features = weight[0], math.prod(weight[1:])
        shapes[f"{name}.alpha"] = ()
        for factor in LOHA:
            shapes[f"{name}.{factor}"] = (out_features, dim) if factor.endswith("_a") else (dim, in_features)
    return shapes


def ui_merge(weight: Any, factors: dict[str, Any], multiplier: float) -> Any:
    """The UIs' LoHa merge, in float32: W + m · alpha/dim · (w1_a @ w1_b) ⊙ (w2_a @ w2_b), reshaped to W."""
    w1_a, w1_b, w2_a, w2_b = (factors[name].float() for name in LOHA)
    dim = w1_b.shape[0]
    delta = (w1_a @ w1_b) * (w2_a @ w2_b)
    return (weight.float() + multiplier * float(factors["alpha"]) / dim * delta.reshape(weight.shape)).to(weight.dtype)


def group_modules(tensors: dict[str, Any]) -> dict[str, dict[str, Any]]:
    grouped: dict[str, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        module, _, name = key.partition(".")
        grouped.setdefault(module, {})[name] = tensor
    return grouped


def merge_into(roots: dict[str, Any], tensors: dict[str, Any], multiplier: float) -> list[str]:
    """Merge every module of a LoHa state dict into the models, as the UIs map them (kohya name of every module of
    each model); return the names that matched no module."""
    import torch

    by_name = {kohya_name(prefix, path): module for prefix, root in roots.items()
               for path, module in root.named_modules()}
    unmatched = []
    with torch.no_grad():
        for name, factors in group_modules(tensors).items():
            module = by_name.get(name)
            if module is None:
                unmatched.append(name)
                continue
            module.weight.copy_(ui_merge(module.weight, factors, multiplier))
    return unmatched


def relative(actual: Any, reference: Any) -> float:
    return float((actual.double() - reference.double()).norm() / reference.double().norm())


def compare(lora: Path, model_dir: Path, multiplier: float) -> dict[str, Any]:
    """The tiny model's UNet and text-encoder outputs with the LoHa applied by LyCORIS's forward hooks, and with it
    merged by the UIs' formula; the LoHa's effect (hooked vs without it) says how much the comparison can see."""
    import torch
    from diffusers import UNet2DConditionModel
    from lycoris.kohya import create_network_from_weights
    from safetensors.torch import load_file
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet", torch_dtype=torch.float32).eval()
    text_encoder = CLIPTextModel.from_pretrained(model_dir / "text_encoder", torch_dtype=torch.float32).eval()
    latents = torch.randn(1, 4, 8, 8)
    context = torch.randn(1, 77, 768)
    input_ids = torch.randint(0, text_encoder.config.vocab_size, (1, 77))

    def outputs() -> dict[str, Any]:
        with torch.no_grad():
            encoded = text_encoder(input_ids, output_hidden_states=True)
            return {"unet": unet(latents, 500, encoder_hidden_states=context).sample,
                    "text_encoder": encoded.last_hidden_state,
                    "text_encoder_clip_skip_2": encoded.hidden_states[-2]}

    base = outputs()
    network, _ = create_network_from_weights(multiplier, str(lora), None, text_encoder, unet, for_inference=True)
    network.apply_to(text_encoder, unet, apply_text_encoder=True, apply_unet=True)
    hooked = outputs()
    loaded = {"text_encoder": len(network.text_encoder_loras), "unet": len(network.unet_loras)}
    for module in network.loras:
        module.restore()
    restored = outputs()
    unmatched = merge_into({"lora_unet": unet, "lora_te": text_encoder}, load_file(str(lora)), multiplier)
    merged = outputs()
    return {
        "loaded": loaded,
        "unmatched": unmatched,
        "restored_exactly": all(torch.equal(restored[key], base[key]) for key in base),
        "outputs": {key: {"merged_vs_hooked": relative(merged[key], hooked[key]),
                          "effect": relative(hooked[key], base[key])} for key in base},
    }


def main(argv: list[str]) -> int:
    if len(argv) != 5 or argv[0] != "compare":
        print(__doc__, file=sys.stderr)
        return 2
    lora, model_dir, result, multiplier = Path(argv[1]), Path(argv[2]), Path(argv[3]), float(argv[4])
    result.write_text(json.dumps(compare(lora, model_dir, multiplier), indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main(sys.argv[1:]))
