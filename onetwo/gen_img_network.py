"""A network module for sd-scripts' gen_img.py (`--network_module onetwo.gen_img_network`) that applies a LyCORIS
LoRA of SD1 whole. gen_img.py hands network modules its text encoders as a list, so LyCORIS 3.x looks for
`lora_te1_` keys and loads none of the file's `lora_te_` modules, and it calls `apply_to(text_encoders, unet)`
without the `apply_text_encoder` / `apply_unet` flags LyCORIS asserts. This module unwraps the one-element list and
passes both flags; loading and applying stay LyCORIS's own.
"""

from __future__ import annotations

from typing import Any


def single(text_encoders: Any) -> Any:
    """SD1's one text encoder out of gen_img.py's list (SDXL's two stay a list: LyCORIS names them te1_, te2_)."""
    if isinstance(text_encoders, (list, tuple)) and len(text_encoders) == 1:
        return text_encoders[0]
    return text_encoders


def create_network_from_weights(multiplier: float, file: str | None, vae: Any, text_encoder: Any, unet: Any,
                                weights_sd: dict[str, Any] | None = None, for_inference: bool = False,
                                **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    from lycoris.kohya import create_network_from_weights as lycoris_create

    network, weights_sd = lycoris_create(multiplier, file, vae, single(text_encoder), unet, weights_sd,
                                         for_inference, **kwargs)
    lycoris_apply_to = network.apply_to

    def apply_to(text_encoders: Any, unet: Any, apply_text_encoder: bool = True, apply_unet: bool = True) -> None:
        lycoris_apply_to(single(text_encoders), unet, apply_text_encoder=apply_text_encoder, apply_unet=apply_unet)

    network.apply_to = apply_to
    return network, weights_sd
