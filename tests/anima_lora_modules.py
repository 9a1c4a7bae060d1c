"""Run inside sd-scripts (its folder first on sys.path), never inside pytest: build the full-size Anima DiT the way
anima_utils.load_anima_model does, on the meta device (no weights: its 2 B parameters take no memory), make
networks.lora_anima's network on it with the template's dim, and write each LoRA module's name and weight shapes,
the DiT's parameter count and its state-dict keys as ComfyUI would hold them (`diffusion_model.` dropped).

    python tests/anima_lora_modules.py SD_SCRIPTS NETWORK_DIM RESULT.json
"""

from __future__ import annotations

import inspect
import json
import sys


def main(sd_scripts: str, network_dim: int, result: str) -> None:
    sys.path.insert(0, sd_scripts)
    from accelerate import init_empty_weights
    from library import anima_models, anima_utils
    from networks import lora_anima

    # the DiT's config is a literal inside load_anima_model: read it from there, so it follows the checkout
    source = inspect.getsource(anima_utils.load_anima_model)
    start = source.index("dit_config = {")
    scope = {"attn_mode": "torch", "split_attn": False}
    exec(source[start:source.index("}", start) + 1].strip(), {}, scope)  # a dict literal of constants
    with init_empty_weights():
        dit = anima_models.Anima(**scope["dit_config"])
    network = lora_anima.create_network(1.0, network_dim, 1.0, None, [], dit)
    modules = {lora.lora_name: [list(lora.lora_down.weight.shape), list(lora.lora_up.weight.shape)]
               for lora in network.unet_loras}
    with open(result, "w", encoding="utf-8") as handle:
        json.dump({"dit_parameters": sum(p.numel() for p in dit.parameters()), "modules": modules,
                   "text_encoder_modules": len(network.text_encoder_loras),
                   "dit_keys": sorted(dit.state_dict())}, handle)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
