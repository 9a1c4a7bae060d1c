"""The model families onetwo trains, as data: each one's trainer script, templates, the arguments that script
accepts, the base-model kinds (as `base_model.classify` names them) it trains on, and what the kohya_ss GUI calls
it. Adding a family is an entry here plus templates and tests, not a branch in code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from onetwo.kohya.args import SDXL_ONLY_ARGS, TRAIN_NETWORK_ARGS


@dataclass(frozen=True)
class Family:
    name: str  # project.model
    label: str
    train_script: str  # in the sd-scripts checkout
    templates: str  # the folder under templates/ ("" is templates/ itself)
    arguments: Mapping[str, str]  # every option of train_script, with its kind (onetwo.kohya.args)
    base_kinds: tuple[str, ...]  # the base_model.classify kinds this family trains on
    gui_flag: str = ""  # the kohya_ss GUI checkbox that selects the family ("": none, the SD1 default)
    prediction_markers: bool = False  # reads ComfyUI's v_pred/ztsnr marker tensors (base_model.PREDICTION_MARKERS)


SD1 = Family("sd1", "SD1", "train_network.py", "", TRAIN_NETWORK_ARGS, ("sd1", "sd2"))
SDXL = Family("sdxl", "SDXL", "sdxl_train_network.py", "sdxl", {**TRAIN_NETWORK_ARGS, **SDXL_ONLY_ARGS}, ("sdxl",),
              gui_flag="sdxl", prediction_markers=True)
FAMILIES: dict[str, Family] = {family.name: family for family in (SD1, SDXL)}


def family_of_kind(kind: str) -> Family | None:
    """The family that trains on a base model of this classify kind."""
    return next((family for family in FAMILIES.values() if kind in family.base_kinds), None)
