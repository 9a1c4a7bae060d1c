"""The project's settings as typed, frozen dataclasses (`project.file` parses and validates the project file into
them), the paths every step derives from them, and the fixed choices: stages, modes, formats, trainer scripts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onetwo.kohya.families import FAMILIES

REPO_ROOT = Path(__file__).resolve().parents[2]
STAGES = ("stage1", "stage2", "joint")
MODES = ("sequential", "joint")
# Which sd-scripts trainer each base-model family uses (onetwo.kohya.families declares the families).
TRAIN_SCRIPTS = {name: family.train_script for name, family in FAMILIES.items()}
LAYOUTS = ("equal", "natural", "scene")
SCENE_PLACEMENTS = ("ground", "random")
LOSS_MASKS = ("none", "seam", "figures")
DEFAULT_CAPTION = "{left}/{right}/COMPOSITE, {left_tags}, {right_tags}"
GROUP_CAPTION = "{names}/COMPOSITE, {tags}"
DEFAULT_SINGLE_CAPTION = "{name}, {tags}"
FORMATS = ("png", "webp")
ORIGINALS_MODES = ("link", "copy")
# Caption files read beside an image when `caption_extension` is unset: onetwo's .txt, then sd-scripts' default.
CAPTION_EXTENSIONS = (".txt", ".caption")


def kohya_token(name: str, class_token: str = "") -> str:
    """kohya's `<token> <class>` (`alice girl`), or the name alone without a class: one caption token."""
    return f"{name} {class_token}".strip()


@dataclass(frozen=True)
class Character:
    name: str
    images: Path
    repeats: int | None
    recursive: bool
    slug: str
    class_token: str = ""  # kohya's class (`10_alice girl` → "girl"): kept after the name in single captions
    caption_extension: str = ""  # "" reads CAPTION_EXTENSIONS in order

    @property
    def token(self) -> str:
        """The first, kept token of the character's own captions: the name, then its class, as kohya writes it."""
        return kohya_token(self.name, self.class_token)


@dataclass(frozen=True)
class CompositeSettings:
    per_pair: int = 40
    seed: int = 0
    caption: str = DEFAULT_CAPTION
    group_size: int = 2
    # None: the bucket of the composite stage whose aspect is nearest the layout's, so kohya crops nothing.
    width: int | None = None
    height: int | None = None
    layout: str = "equal"
    mirror: float = 0.0
    gap: int = 0
    background: tuple[int, int, int] = (255, 255, 255)
    vertical_anchor: float = 0.5
    format: str = "png"
    repeats: int = 1
    trim_captions: bool = False
    workers: int = 0
    # layout = "scene" (MuDI's Seg-Mix): figures cut to their masks on one background; docs/composites.md
    scene_share: float = 1.0  # the share of composites that are scenes, the rest side by side
    scene_scale: tuple[float, float] = (0.75, 1.0)  # each figure's scale, as a share of its largest fit (MuDI's)
    scene_overlap: float = 0.2  # neighbours may overlap by at most this share of the narrower figure
    scene_placement: str = "ground"  # "ground": on one ground line; "random": each at a random height
    scene_margin: float = 0.05  # around the mask's box, as a share of its longer side
    scene_tag: str = ""  # appended to scene captions, e.g. "simple background"
    # The loss weight as the composites' alpha (sd-scripts' alpha_mask): "seam" lowers it around the joins,
    # "figures" keeps it on the figures; `mask_floor` is the weight elsewhere (docs/composites.md).
    loss_mask: str = "none"
    mask_floor: float = 0.25
    share: float | None = None  # stage 2's image views that are composites, the rest replay; solved into repeats


@dataclass(frozen=True)
class SampleSettings:
    negative: str = "lowres, bad anatomy, bad hands, worst quality"
    steps: int = 28
    scale: float = 7.0
    seed: int = 1
    tags_per_character: int = 3
    seeds: int = 1  # images per prompt per epoch (seed, seed+1, …): each one more full round of sampling


@dataclass(frozen=True)
class SyntheticSettings:
    """`onetwo synth`: images stage 1 draws of each character alone, kept by eval's verdict (docs/synthetic.md)."""

    per_character: int = 16  # images drawn for each character
    below: int = 0  # draw only for characters with fewer images than this; 0: every character
    max_share: float = 0.3  # the most of a character's composite deck that may be synthetic
    margin: float = 0.01  # kept only within the identity threshold minus this
    duplicate_bits: int = 8  # a 64-bit difference hash this close to another image's: a near-duplicate
    seed: int = 0
    stage1: bool = False  # stage 1 trains on them too: the model fed its own output, only when asked


@dataclass(frozen=True)
class Regularization:
    """kohya `is_reg` subsets: a folder of class images per stage, captioned by their .txt or `class_tokens`."""

    folders: dict[str, Path] = field(default_factory=dict)
    class_tokens: str = ""
    repeats: int = 1


@dataclass(frozen=True)
class Overrides:
    """User values for one stage: training keys, `[[datasets]]` keys and `[[datasets.subsets]]` keys."""

    train: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    subset: dict[str, Any] = field(default_factory=dict)

    def then(self, other: Overrides) -> Overrides:
        return Overrides({**self.train, **other.train}, {**self.dataset, **other.dataset},
                         {**self.subset, **other.subset})


@dataclass(frozen=True)
class Project:
    file: Path
    name: str
    base_model: Path
    work_dir: Path
    output_dir: Path
    sd_scripts: Path
    templates: Path
    single_caption: str
    model: str
    mode: str
    replay: float
    characters: tuple[Character, ...]
    composite: CompositeSettings
    samples: SampleSettings
    accelerate: dict[str, Any]
    regularization: Regularization
    overrides: dict[str, Overrides]
    originals: str = "link"  # how stage 1's folders hold the images kohya can read as they are: links or copies
    python: str | None = None  # the trainer's Python (project.python): a path, or a command looked up on PATH
    attention_fallback: bool = True  # xformers = true without an importable xformers: train with sdpa instead
    stage1_loss_mask: str = "none"  # [stage1] loss_mask = "figures": stage 1 trains on the figures (alpha_mask)
    stage1_mask_floor: float = 0.25
    model_files: dict[str, Path] = field(default_factory=dict)  # the family's file slots (families.ModelFile.key)
    synthetic: SyntheticSettings = field(default_factory=SyntheticSettings)

    @property
    def composite_dir(self) -> Path:
        return self.work_dir / "composites"

    @property
    def manifest_file(self) -> Path:
        return self.work_dir / "composites.manifest.json"

    @property
    def mask_dir(self) -> Path:
        return self.work_dir / "masks"

    @property
    def train_script(self) -> Path:
        return self.sd_scripts / TRAIN_SCRIPTS[self.model]

    def stage_dir(self, stage: str) -> Path:
        return self.work_dir / stage

    def samples_dir(self, stage: str) -> Path:
        """Where `onetwo sample` draws a stage's epoch files, and where `onetwo eval` reads them."""
        return self.work_dir / "samples" / stage

    @property
    def synthetic_dir(self) -> Path:
        """`onetwo synth`'s drawings, one folder per character, and its report.json."""
        return self.work_dir / "synthetic"

    @property
    def originals_dir(self) -> Path:
        return self.work_dir / "originals"

    @property
    def replay_dir(self) -> Path:
        return self.work_dir / "replay"

    def regularization_dir(self, stage: str) -> Path:
        return self.work_dir / "regularization" / stage

    def output_name(self, stage: str) -> str:
        return f"{self.name}-{stage}"

    def lora_file(self, stage: str) -> Path:
        return self.output_dir / f"{self.output_name(stage)}.safetensors"

    def stage_overrides(self, stage: str) -> Overrides:
        return self.overrides["training"].then(self.overrides[stage])
