"""The sampling worker's merge (onetwo/sample/worker.py, run inside the trainer's Python): each module merged with the
UIs' formula as tests/sd1_lora.py writes it, independently, for LoHa and LoRA; the base weights put back exactly
before the next file; a kind it cannot merge, or a file naming no layer, refused."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.sdscripts
torch = pytest.importorskip("torch", reason="torch is not installed (make setup)")
pytest.importorskip("safetensors", reason="safetensors is not installed (make setup)")

from tests.sd1_lora import ui_merge  # noqa: E402

WORKER = Path(__file__).resolve().parent.parent / "onetwo" / "sample" / "worker.py"


def worker():
    spec = importlib.util.spec_from_file_location("onetwo_sample_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj_in = torch.nn.Conv2d(6, 4, 1)
        self.to_q = torch.nn.Linear(5, 3)
        self.conv = torch.nn.Conv2d(2, 3, 3)


def loha(out_features: int, in_features: int, dim: int, alpha: float) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(out_features * 31 + in_features)
    return {"hada_w1_a": torch.randn(out_features, dim, generator=generator),
            "hada_w1_b": torch.randn(dim, in_features, generator=generator),
            "hada_w2_a": torch.randn(out_features, dim, generator=generator),
            "hada_w2_b": torch.randn(dim, in_features, generator=generator), "alpha": torch.tensor(alpha)}


def save(path: Path, modules: dict[str, dict[str, torch.Tensor]]) -> str:
    from safetensors.torch import save_file

    save_file({f"{name}.{key}": value.half().contiguous() for name, factors in modules.items()
               for key, value in factors.items()}, str(path))
    return str(path)


def test_merge_is_the_uis_formula_and_restores_the_base_exactly(tmp_path: Path) -> None:
    module = worker()
    model = Tiny()
    base = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    proj, query = loha(4, 6, 4, 1.0), loha(3, 5, 2, 4.0)
    down, up = torch.randn(2, 2, 3, 3), torch.randn(3, 2, 1, 1)  # a LoRA on a 3x3 convolution
    file = save(tmp_path / "a.safetensors", {"lora_unet_proj_in": proj, "lora_unet_to_q": query,
                                             "lora_unet_conv": {"lora_down.weight": down, "lora_up.weight": up,
                                                                "alpha": torch.tensor(1.0)},
                                             "lora_unet_gone": loha(2, 2, 1, 1.0)})
    merger = module.Merger({"lora_unet": model})
    merged, unmatched = merger.merge(file, 0.6)
    assert (merged, unmatched) == (3, ["lora_unet_gone"])
    stored = {name: {key: value.half().float() for key, value in factors.items()}
              for name, factors in (("proj", proj), ("query", query))}
    torch.testing.assert_close(model.proj_in.weight, ui_merge(base["proj_in.weight"], stored["proj"], 0.6))
    torch.testing.assert_close(model.to_q.weight, ui_merge(base["to_q.weight"], stored["query"], 0.6))
    lora = (up.half().float().flatten(1) @ down.half().float().flatten(1)).reshape(base["conv.weight"].shape)
    torch.testing.assert_close(model.conv.weight, base["conv.weight"] + 0.6 * 1.0 / 2 * lora)
    assert not torch.equal(model.to_q.weight, base["to_q.weight"])

    only_query = save(tmp_path / "b.safetensors", {"lora_unet_to_q": loha(3, 5, 2, 1.0)})
    merger.merge(only_query, 1.0)  # the next file starts from the base model, not from a.safetensors
    assert torch.equal(model.proj_in.weight, base["proj_in.weight"]) and torch.equal(model.conv.weight,
                                                                                    base["conv.weight"])
    merger.restore()
    assert all(torch.equal(tensor, base[name]) for name, tensor in model.state_dict().items())


def test_merge_refuses_what_it_cannot_apply(tmp_path: Path) -> None:
    module = worker()
    merger = module.Merger({"lora_unet": Tiny()})
    lokr = save(tmp_path / "k.safetensors", {"lora_unet_to_q": {"lokr_w1": torch.ones(1, 1),
                                                                "lokr_w2": torch.ones(3, 5)}})
    with pytest.raises(SystemExit, match=r"1 module\(s\) of a kind onetwo cannot merge .*lokr_w1"):
        merger.merge(lokr, 1.0)
    other = save(tmp_path / "o.safetensors", {"lora_te_mlp_fc1": loha(2, 2, 1, 1.0)})
    with pytest.raises(SystemExit, match="none of its 1 modules names a layer"):
        merger.merge(other, 1.0)


def test_the_base_weights_are_kept_on_disk_not_in_memory_and_put_back_exactly(tmp_path: Path) -> None:
    """A LoHa on a whole UNet changes most of its weights: the merger writes each changed base weight once to a
    scratch file under the folder it is given, holds no copy of it, and reads it back exactly, in the weights' dtype."""
    module = worker()
    model = Tiny().to(torch.bfloat16)
    base = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    first = save(tmp_path / "a.safetensors", {"lora_unet_proj_in": loha(4, 6, 4, 1.0),
                                              "lora_unet_to_q": loha(3, 5, 2, 4.0)})
    second = save(tmp_path / "b.safetensors", {"lora_unet_to_q": loha(3, 5, 2, 1.0)})
    keep_dir = tmp_path / "job"
    keep_dir.mkdir()
    merger = module.Merger({"lora_unet": model}, str(keep_dir))
    assert merger.merge(first, 1.0) == (2, [])
    assert not torch.equal(model.proj_in.weight, base["proj_in.weight"])
    assert not any(isinstance(value, torch.Tensor) for value in vars(merger).values())
    assert list(keep_dir.iterdir()) == []  # unlinked at once: nothing is left behind if the worker dies
    written = merger.base.seek(0, 2)
    assert written == (4 * 6 + 3 * 5) * 2  # both weights, in bf16
    merger.merge(second, 1.0)
    assert torch.equal(model.proj_in.weight, base["proj_in.weight"])
    assert merger.base.seek(0, 2) == written  # to_q's base weight was kept already
    merger.restore()
    assert all(torch.equal(tensor, base[name]) for name, tensor in model.state_dict().items())
    merger.close()


def test_the_last_file_keeps_nothing_and_nothing_can_follow_it(tmp_path: Path) -> None:
    module = worker()
    model = Tiny()
    first = save(tmp_path / "a.safetensors", {"lora_unet_to_q": loha(3, 5, 2, 1.0)})
    merger = module.Merger({"lora_unet": model}, str(tmp_path))
    before = model.to_q.weight.clone()
    assert merger.merge(first, 1.0, keep_base=False) == (1, [])
    assert merger.base is None and not torch.equal(model.to_q.weight, before)
    with pytest.raises(SystemExit, match="the base weights were not kept"):
        merger.merge(first, 1.0)


def test_models_built_under_the_skip_draw_no_random_numbers_and_load_the_same() -> None:
    """The global generator is left where it was (the constructors' kaiming, uniform and normal fills, the
    transformers text encoder's own _init_weights among them), and a strict load gives the model it gives without
    the skip. Without the skip the same constructors do draw."""
    from transformers import CLIPTextConfig, CLIPTextModel

    module = worker()
    config = CLIPTextConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=8)

    def build() -> torch.nn.Module:
        return torch.nn.ModuleDict({"tiny": Tiny(), "embedding": torch.nn.Embedding(10, 4),
                                    "text": CLIPTextModel._from_config(config)})

    torch.manual_seed(0)
    reference = build()
    state = torch.get_rng_state()
    with module.random_init_skipped(True):
        skipped = build()
    assert torch.equal(torch.get_rng_state(), state)
    skipped.load_state_dict(reference.state_dict())
    assert all(torch.equal(tensor, reference.state_dict()[name]) for name, tensor in skipped.state_dict().items())
    with module.random_init_skipped(False):
        build()
    assert not torch.equal(torch.get_rng_state(), state)
    state = torch.get_rng_state()
    with module.random_init_skipped(False):
        CLIPTextModel._from_config(config)
    assert not torch.equal(torch.get_rng_state(), state)  # the text encoder's own fills draw without the skip
