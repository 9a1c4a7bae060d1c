"""The model families onetwo trains, as data: each one's trainer script, templates, the arguments that script
accepts, the base-model kinds (as `base_model.classify` names them) it trains on, and what the kohya_ss GUI calls
it. Adding a family is an entry here plus templates and tests, not a branch in code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from onetwo.kohya.args import ANIMA_ONLY_ARGS, SDXL_ONLY_ARGS, TRAIN_NETWORK_ARGS


@dataclass(frozen=True)
class ModelFile:
    """A file the family needs beside the base model: its [project] key, the trainer argument it fills, whether
    it must be given and the base_model.classify kinds it may hold."""

    key: str
    argument: str
    required: bool
    kinds: tuple[str, ...]
    what: str


@dataclass(frozen=True)
class TokenBudget:
    """How a family's captions are counted: by which tokenizer (onetwo.data.captions has a counter for each), the
    budget onetwo trims composites and warns at, and the training key that sets how many tokens the trainer reads
    (with the trainer's value when the key is unset)."""

    tokenizer: str  # "CLIP" or "Qwen3"
    limit: int
    limit_key: str
    trainer_default: int


# kohya's max_token_length: 75, 150 or 225 CLIP tokens (75 when unset); onetwo budgets composites at the most.
CLIP_TOKENS = TokenBudget("CLIP", 225, "max_token_length", 75)
# anima_train_utils: --qwen3_max_token_length, default 512; strategy_anima pads/truncates to it.
QWEN3_TOKENS = TokenBudget("Qwen3", 512, "qwen3_max_token_length", 512)


@dataclass(frozen=True)
class Family:
    name: str  # project.model
    label: str
    train_script: str  # in the sd-scripts checkout
    templates: str  # the folder under templates/ ("" is templates/ itself)
    arguments: Mapping[str, str]  # every option of train_script, with its kind (onetwo.kohya.args)
    base_kinds: tuple[str, ...]  # the base_model.classify kinds this family trains on
    gui_flag: str = ""  # the kohya_ss GUI checkbox that selects the family ("": none, the SD1 default)
    gui: bool = True  # onetwo writes the kohya_ss GUI file (Anima: the GUI's anima_* fields are not mapped yet)
    prediction_markers: bool = False  # reads ComfyUI's v_pred/ztsnr marker tensors (base_model.PREDICTION_MARKERS)
    files: tuple[ModelFile, ...] = ()  # the [project] file slots beside base_model
    sampled: bool = True  # onetwo sample's worker loads it and merges LoRAs into it
    tokens: TokenBudget = CLIP_TOKENS  # how captions are counted and budgeted
    # What onetwo sample's worker, which runs without onetwo, is told in its job (sample/run.py): the trainer class
    # in train_script, sd-scripts' sampling pipeline ("module:Class"), whether that pipeline takes the tokenizer
    # and text-encoder lists or the first of each, and kohya's LoRA prefixes of [unet, *text encoders].
    trainer_class: str = ""
    sample_pipeline: str = ""
    pipeline_lists: bool = False
    lora_prefixes: tuple[str, ...] = ()
    # Or, for a family whose trainer draws without a pipeline: the function that draws one prompt ("module:name"),
    # called as sd-scripts' DiT trainers call theirs: (accelerator, args, model, text_encoder, vae, tokenize_strategy,
    # text_encoding_strategy, save_dir, prompt_dict, epoch, steps, sample_prompts_te_outputs, prompt_replacement).
    sample_function: str = ""
    # The trainer's loader builds the models with random weights and then loads every one strictly, so the worker
    # leaves the random initialisation out (SD1's; the SDXL and Anima loaders build on the meta device already).
    skip_random_init: bool = False


SD1 = Family("sd1", "SD1", "train_network.py", "", TRAIN_NETWORK_ARGS, ("sd1", "sd2"),
             trainer_class="NetworkTrainer",
             sample_pipeline="library.lpw_stable_diffusion:StableDiffusionLongPromptWeightingPipeline",
             lora_prefixes=("lora_unet", "lora_te"), skip_random_init=True)
SDXL = Family("sdxl", "SDXL", "sdxl_train_network.py", "sdxl", {**TRAIN_NETWORK_ARGS, **SDXL_ONLY_ARGS}, ("sdxl",),
              gui_flag="sdxl", prediction_markers=True, trainer_class="SdxlNetworkTrainer",
              sample_pipeline="library.sdxl_lpw_stable_diffusion:SdxlStableDiffusionLongPromptWeightingPipeline",
              pipeline_lists=True, lora_prefixes=("lora_unet", "lora_te1", "lora_te2"))
# sd-scripts' docs/anima_train_network.md, section 3: the DiT is the base model; Qwen3 and the VAE are required, the
# T5 tokenizer (else the checkout's configs/t5_old) optional. No LLM adapter slot: at the pinned commit
# --llm_adapter_path is parsed but never read, and the DiT loads only with its llm_adapter.* keys inside.
ANIMA = Family("anima", "Anima", "anima_train_network.py", "anima", {**TRAIN_NETWORK_ARGS, **ANIMA_ONLY_ARGS},
               ("anima_dit",), gui=False, tokens=QWEN3_TOKENS, trainer_class="AnimaNetworkTrainer",
               sample_function="library.anima_train_utils:_sample_image_inference",
               lora_prefixes=("lora_unet", "lora_te"), files=(
                   ModelFile("text_encoder", "qwen3", True, ("qwen3",), "the Qwen3-0.6B text encoder"),
                   ModelFile("vae", "vae", True, ("qwen_image_vae",), "the Qwen-Image VAE"),
                   ModelFile("t5_tokenizer", "t5_tokenizer_path", False, ("t5_tokenizer",), "the T5 tokenizer"),
               ))
FAMILIES: dict[str, Family] = {family.name: family for family in (SD1, SDXL, ANIMA)}


def family_of_kind(kind: str) -> Family | None:
    """The family that trains on a base model of this classify kind."""
    return next((family for family in FAMILIES.values() if kind in family.base_kinds), None)
