"""onetwo.gen_img_network: gen_img.py's calls (text encoders as a list, `apply_to` without flags) apply the whole
LoHa, where lycoris.kohya itself loads none of the text encoder's modules and then asserts."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.sdscripts
torch = pytest.importorskip("torch", reason="torch is not installed (make setup)")
pytest.importorskip("lycoris", reason="lycoris-lora is not installed (make setup)")

from tests.test_ui_merge import layer_outputs, models, state_dict  # noqa: E402

SETTINGS = {"lora_unet_attention_proj_in": (8, 1.0), "lora_unet_attention_to_q": (4, 4.0), "lora_te_mlp_fc1": (2, 0.5)}


def test_gen_img_calls_apply_every_module_through_the_shim() -> None:
    from onetwo.gen_img_network import create_network_from_weights

    roots = models()
    tensors = state_dict(roots, SETTINGS)
    base = layer_outputs(roots)
    text_encoders, unet = [roots["lora_te"]], roots["lora_unet"]  # as gen_img.py passes them for SD1
    network, weights = create_network_from_weights(1.0, None, None, text_encoders, unet, weights_sd=dict(tensors),
                                                   for_inference=True)
    assert (len(network.text_encoder_loras), len(network.unet_loras)) == (1, 2)
    network.apply_to(text_encoders, unet)
    network.load_state_dict(weights, False)
    changed = layer_outputs(roots)
    assert all(not torch.equal(changed[name], base[name]) for name in base)


def test_lycoris_alone_fails_on_the_same_calls() -> None:
    from lycoris.kohya import create_network_from_weights

    roots = models()
    text_encoders, unet = [roots["lora_te"]], roots["lora_unet"]
    network, _ = create_network_from_weights(1.0, None, None, text_encoders, unet,
                                             weights_sd=state_dict(roots, SETTINGS), for_inference=True)
    assert (len(network.text_encoder_loras), len(network.unet_loras)) == (0, 2)  # looks for lora_te1_
    with pytest.raises(AssertionError, match="flag not set"):
        network.apply_to(text_encoders, unet)
