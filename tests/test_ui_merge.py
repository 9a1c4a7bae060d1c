"""The generation UIs' LoHa merge (tests/sd1_lora.py `ui_merge`), held against LyCORIS's forward hooks on small
layers of both kinds a LoHa of SD1 trains (Linear, 1x1 convolution). The same comparison on the tiny SD1 model with
the trained stage-2 file is in tests/test_e2e.py."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.sdscripts
torch = pytest.importorskip("torch", reason="torch is not installed (make setup)")
pytest.importorskip("lycoris", reason="lycoris-lora is not installed (make setup)")

from tests.sd1_lora import kohya_name, merge_into, relative  # noqa: E402

TOLERANCE = 1e-5


def models() -> dict[str, Any]:
    """A "UNet" and a "text encoder" whose module paths look like SD1's, seeded."""
    torch.manual_seed(0)
    unet = torch.nn.Module()
    unet.attention = torch.nn.Module()
    unet.attention.proj_in = torch.nn.Conv2d(16, 24, 1)
    unet.attention.to_q = torch.nn.Linear(24, 40, bias=False)
    text_encoder = torch.nn.Module()
    text_encoder.mlp = torch.nn.Module()
    text_encoder.mlp.fc1 = torch.nn.Linear(32, 48)
    return {"lora_unet": unet, "lora_te": text_encoder}


def loha(module: Any, dim: int, alpha: float, generator: torch.Generator) -> dict[str, Any]:
    """Factors of the size a trained LoHa has, large enough that the change is plain to see."""
    out_features, in_features = module.weight.shape[0], module.weight[0].numel()

    def factor(*shape: int) -> Any:
        return torch.randn(*shape, generator=generator) * 0.5

    return {"hada_w1_a": factor(out_features, dim), "hada_w1_b": factor(dim, in_features),
            "hada_w2_a": factor(out_features, dim), "hada_w2_b": factor(dim, in_features),
            "alpha": torch.tensor(alpha)}


def state_dict(roots: dict[str, Any], settings: dict[str, tuple[int, float]]) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(1)
    tensors = {}
    for prefix, root in roots.items():
        for path, module in root.named_modules():
            name = kohya_name(prefix, path)
            if name in settings:
                factors = loha(module, *settings[name], generator)
                tensors.update({f"{name}.{key}": value for key, value in factors.items()})
    return tensors


def layer_outputs(roots: dict[str, Any]) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(2)
    unet, text_encoder = roots["lora_unet"], roots["lora_te"]
    with torch.no_grad():
        return {"proj_in (1x1 conv)": unet.attention.proj_in(torch.randn(2, 16, 5, 5, generator=generator)),
                "to_q (linear)": unet.attention.to_q(torch.randn(3, 24, generator=generator)),
                "fc1 (linear, text encoder)": text_encoder.mlp.fc1(torch.randn(4, 32, generator=generator))}


@pytest.mark.parametrize("multiplier", [1.0, 0.6])
def test_the_uis_formula_matches_lycoris_forward_hooks(multiplier: float) -> None:
    from lycoris.kohya import create_network_from_weights

    roots = models()
    # dim and alpha differ per module: the formula must take dim from w1_b and alpha from the module's own tensor
    settings = {"lora_unet_attention_proj_in": (8, 1.0), "lora_unet_attention_to_q": (4, 4.0),
                "lora_te_mlp_fc1": (2, 0.5)}
    tensors = state_dict(roots, settings)
    base = layer_outputs(roots)
    network, _ = create_network_from_weights(multiplier, None, None, roots["lora_te"], roots["lora_unet"],
                                             weights_sd=dict(tensors), for_inference=True)
    network.apply_to(roots["lora_te"], roots["lora_unet"], apply_text_encoder=True, apply_unet=True)
    assert len(network.unet_loras) == 2 and len(network.text_encoder_loras) == 1
    hooked = layer_outputs(roots)
    for module in network.loras:
        module.restore()
    assert all(torch.equal(output, base[name]) for name, output in layer_outputs(roots).items())

    assert merge_into(roots, tensors, multiplier) == []
    merged = layer_outputs(roots)
    for name in base:
        assert relative(merged[name], hooked[name]) <= TOLERANCE, name
        assert relative(hooked[name], base[name]) > 1000 * TOLERANCE, name  # the LoHa changes the output visibly


def test_a_module_the_model_lacks_is_reported_not_merged() -> None:
    roots = models()
    tensors = state_dict(roots, {"lora_te_mlp_fc1": (2, 1.0)})
    tensors.update({key.replace("lora_te_mlp_fc1", "lora_te_mlp_fc9"): value for key, value in tensors.items()})
    before = roots["lora_te"].mlp.fc1.weight.clone()
    assert merge_into(roots, tensors, 1.0) == ["lora_te_mlp_fc9"]
    assert not torch.equal(roots["lora_te"].mlp.fc1.weight, before)
