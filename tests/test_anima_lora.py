"""issue 17 §2, the closest honest substitute for an Anima end-to-end (see docs/anima.md): the full-size DiT that
anima_train_network.py builds, with networks.lora_anima's network at the template's settings, has exactly the LoRA
modules derived here from sd-scripts' Anima model and the network's selection rules, with their shapes, and each
one's name is what ComfyUI's generic `lora_unet_` mapping gives the DiT's weight. No training: the DiT is built on
the meta device."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from onetwo.kohya.render import read_toml
from tests.sdscripts import REPO, SD_SCRIPTS, child_env, needs_sdscripts, tail

pytestmark = [pytest.mark.sdscripts, needs_sdscripts]

BLOCKS, WIDTH, CONTEXT, MLP = 28, 2048, 1024, 4 * 2048  # load_anima_model's config; the MLP is 4x wide
# Each Block's Linear layers; lora_anima's default exclusion (.*(_modulation|_norm|_embedder|final_layer).*) drops
# adaln_modulation_*, and the embedders and final layer are left out too.
LAYERS = {f"{part}_{proj}": (WIDTH if part == "self_attn" or proj in ("q_proj", "output_proj") else CONTEXT, WIDTH)
          for part in ("self_attn", "cross_attn") for proj in ("q_proj", "k_proj", "v_proj", "output_proj")}
LAYERS |= {"mlp_layer1": (WIDTH, MLP), "mlp_layer2": (MLP, WIDTH)}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    template = read_toml(REPO / "templates" / "anima" / "train.toml")
    dim = template["additional_network_arguments"]["network_dim"]
    result = tmp_path_factory.mktemp("anima") / "modules.json"
    done = subprocess.run([sys.executable, str(REPO / "tests" / "anima_lora_modules.py"), str(SD_SCRIPTS), str(dim),
                           str(result)], capture_output=True, text=True, env=child_env(), timeout=600)
    assert done.returncode == 0, tail(done.stdout + done.stderr)
    return {"dim": dim, **json.loads(result.read_text(encoding="utf-8"))}


def test_the_dit_is_full_size(built: dict) -> None:
    assert 2.0e9 < built["dit_parameters"] < 2.2e9


def test_the_lora_modules_are_the_derived_list(built: dict) -> None:
    dim = built["dim"]
    expected = {f"lora_unet_blocks_{block}_{layer}": [[dim, fan_in], [fan_out, dim]]
                for block in range(BLOCKS) for layer, (fan_in, fan_out) in LAYERS.items()}
    assert built["modules"] == expected
    assert len(expected) == 280 and built["text_encoder_modules"] == 0  # network_train_unet_only: the DiT alone


def test_comfyui_reads_the_names_as_written(built: dict) -> None:
    """comfy/lora.py model_lora_keys_unet: lora_unet_ + the weight's path under diffusion_model., dots as _."""
    comfy = {"lora_unet_" + key.removesuffix(".weight").replace(".", "_") for key in built["dit_keys"]
             if key.endswith(".weight")}
    assert set(built["modules"]) <= comfy
