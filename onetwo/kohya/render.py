"""A stage's kohya files from its templates: the training config and dataset TOMLs and the sample prompts, merged
template → onetwo's computed values → the project file's overrides → `--set`, every key and resolution checked
against what the pinned sd-scripts accepts (kohya itself ignores misspelt keys). Pure but for reading the templates
and writing the files."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from onetwo import __version__
from onetwo.data.captions import composite_caption, sample_prompt_line, single_caption, top_tags
from onetwo.data.composite import PORTRAIT
from onetwo.data.scan import CharacterImages
from onetwo.errors import OnetwoError
from onetwo.fsutil import write_text_if_changed
from onetwo.kohya.base_model import model_settings
from onetwo.kohya.buckets import BucketSettings, fit_size, settings_from_dataset
from onetwo.kohya.families import FAMILIES
from onetwo.kohya.share import stage2_repeats
from onetwo.kohya.validate import (
    WRITTEN_SUBSET_KEYS,
    resolution_problem,
    validate_dataset_keys,
    validate_train_keys,
)
from onetwo.project.config import Overrides, Project
from onetwo.project.strict import tomllib

# What each [[datasets]] of a stage's dataset template trains on, in template order.
ROLES = {"stage1": ("originals",), "stage2": ("composites",), "joint": ("originals", "composites")}
# Where a computed or overriding key goes when the template does not have it yet.
SECTION_OF = {
    "pretrained_model_name_or_path": "model_arguments",
    "network_weights": "additional_network_arguments",
    "sample_prompts": "sample_prompt_arguments",
    **{slot.argument: "model_arguments" for family in FAMILIES.values() for slot in family.files},
}
DEFAULT_SECTION = "training_arguments"


@dataclass(frozen=True)
class Templates:
    train: dict[str, Any]
    dataset: dict[str, Any]
    train_file: Path
    dataset_file: Path


@dataclass(frozen=True)
class RenderedStage:
    stage: str
    config: dict[str, Any]
    dataset: dict[str, Any]
    sample_prompts: str
    notices: tuple[str, ...] = ()  # settings onetwo chose from the base model, said once per stage
    warnings: tuple[str, ...] = ()

    def flat_config(self) -> dict[str, Any]:
        return flatten_sections(self.config)


def flatten_sections(doc: dict[str, Any]) -> dict[str, Any]:
    """kohya ignores section names in a config file: this is what train_network.py sees."""
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise OnetwoError(f"{path}: template not found; restore it from the onetwo repository or set "
                          "project.templates to a folder holding train.toml and dataset-stageN.toml") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise OnetwoError(f"{path}: not valid TOML: {exc}") from exc


def load_templates(project: Project, stage: str) -> Templates:
    train_file = project.templates / "train.toml"
    dataset_file = project.templates / f"dataset-{stage}.toml"
    return Templates(read_toml(train_file), read_toml(dataset_file), train_file, dataset_file)


def set_train_key(doc: dict[str, Any], key: str, value: Any) -> None:
    for section in doc.values():
        if isinstance(section, dict) and key in section:
            section[key] = value
            return
    if key in doc and not isinstance(doc[key], dict):
        doc[key] = value
        return
    doc.setdefault(SECTION_OF.get(key, DEFAULT_SECTION), {})[key] = value


def switch_to_sdpa(config: dict[str, Any]) -> None:
    """In the rendered config, where its sections have the keys: the written config.toml is what trains."""
    set_train_key(config, "xformers", False)
    set_train_key(config, "sdpa", True)


def parse_assignment(item: str, option: str = "--set") -> tuple[str, Any]:
    """`key=value` with a TOML value (1, true, "x", [..]); anything that is not TOML is taken as a string."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise OnetwoError(f"{option} {item!r}: write it as key=value, e.g. {option} max_train_epochs=10")
    try:
        return key.strip(), tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), raw


def parse_set(items: Sequence[str]) -> Overrides:
    """`--set key=value`, `--set dataset.key=value`, `--set subset.key=value`."""
    overrides = Overrides()
    for item in items:
        key, value = parse_assignment(item)
        scope, dot, name = key.partition(".")
        if dot and scope in ("dataset", "subset"):
            getattr(overrides, scope)[name] = value
        else:
            overrides.train[key] = value
    return overrides


def prompt_tags(project: Project, scans: Sequence[CharacterImages]) -> dict[str, tuple[str, ...]]:
    """Each character's most frequent tags, the ones its prompts carry."""
    return {scan.character.name: top_tags([image.tags for image in scan.images], scan.character.name,
                                          project.samples.tags_per_character) for scan in scans}


def character_prompt(project: Project, tags: dict[str, tuple[str, ...]], names: Sequence[str]) -> str:
    """The prompt of one character alone, or of a group left to right, written as its training captions are."""
    by_name = {character.name: character for character in project.characters}
    if len(names) == 1:
        character = by_name[names[0]]
        return single_caption(project.single_caption, character.name, tags[character.name], character.class_token)
    stand_ins = [by_name[name].class_token or name for name in names]
    return composite_caption(project.composite.caption, names, [tags[name] for name in names], stand_ins)


def sample_prompt_groups(project: Project, scans: Sequence[CharacterImages]) -> list[tuple[tuple[str, ...], str]]:
    """(the characters it asks for, left to right; the prompt text): each character alone, then every group in every
    order with the composite token. `onetwo eval` reads a sample's characters from here."""
    tags = prompt_tags(project, scans)
    groups = [(name,) for name in tags] + list(itertools.permutations(tags, project.composite.group_size))
    return [(names, character_prompt(project, tags, names)) for names in groups]


def sample_prompts(project: Project, scans: Sequence[CharacterImages], buckets: BucketSettings) -> str:
    """Every prompt of `sample_prompt_groups`, `samples.seeds` times in a row (seed, seed+1, …), at sizes that fit
    the stage's buckets."""
    samples = project.samples
    composite = project.composite
    explicit = composite.width and composite.height
    aspect = composite.width / composite.height if explicit else PORTRAIT * composite.group_size
    sizes = {1: fit_size(1.0, buckets), composite.group_size: fit_size(aspect, buckets)}
    return "".join(sample_prompt_line(prompt, samples.negative, *sizes[len(names)], samples.steps, samples.scale,
                                      samples.seed + offset) + "\n"
                   for names, prompt in sample_prompt_groups(project, scans) for offset in range(samples.seeds))


def _subset(pattern: dict[str, Any], image_dir: Path, repeats: int, token: str | None,
            user: dict[str, Any]) -> dict[str, Any]:
    """The pattern, then onetwo's values, then the user's [stage.subset] / --set subset. values."""
    subset = {**pattern, "image_dir": str(image_dir), "num_repeats": repeats, "caption_extension": ".txt",
              "keep_tokens": 1}
    if token is not None:
        subset["class_tokens"] = token
    return {**subset, **user}


def render_stage(project: Project, stage: str, scans: Sequence[CharacterImages], templates: Templates,
                 cli: Overrides, network_weights: Path | None = None,
                 provenance: dict[str, str] | None = None) -> RenderedStage:
    """Merge, lowest first: template → computed values → project overrides → command-line --set."""
    user = project.stage_overrides(stage).then(cli)
    config = copy.deepcopy(templates.train)
    computed: dict[str, Any] = {
        "pretrained_model_name_or_path": str(project.base_model),
        "output_dir": str(project.output_dir),
        "output_name": project.output_name(stage),
        "logging_dir": str(project.stage_dir(stage) / "logs"),
        "sample_prompts": str(project.stage_dir(stage) / "sample_prompts.txt"),
        "training_comment": f"onetwo {__version__}, 1to2 {stage}",
        **(provenance or {}),
        **{slot.argument: str(project.model_files[slot.key]) for slot in FAMILIES[project.model].files
           if slot.key in project.model_files},
    }
    if network_weights is not None:
        computed["network_weights"] = str(network_weights)
    origin = {key: f"{templates.train_file}" for key in flatten_sections(config)}
    for key, value in computed.items():
        set_train_key(config, key, value)
    notices, warnings = [], []
    marked, markers = model_settings(project.base_model, project.model)
    for key, value in marked.items():
        if key not in user.train:
            set_train_key(config, key, value)
            origin[key] = f"{project.base_model} (marked {markers})"
            notices.append(f"{key} = true: the base model is marked {markers} as ComfyUI reads them")
        elif user.train[key] is False:
            warnings.append(f"{project.file}: {key} = false, but the base model is marked {markers}: it will "
                            "learn the wrong target; remove the setting (onetwo then sets it true)")
    for key, value in user.train.items():
        set_train_key(config, key, value)
        origin[key] = f"{project.file}: [{stage}] or [training] or --set"
    flat = flatten_sections(config)
    problems = validate_train_keys(flat, origin, project.model)
    if isinstance(flat.get("resolution"), str) and (
            why := resolution_problem(flat["resolution"], "training", origin.get("resolution", "template"))):
        problems.append(why)

    dataset_doc, patterns, dataset_problems = merged_datasets(project, stage, templates, user)
    problems += dataset_problems
    if problems:
        raise OnetwoError(f"{stage}: {len(problems)} setting(s) kohya would reject or silently ignore:", problems)
    datasets = []
    for role, (dataset, pattern) in zip(ROLES[stage], patterns, strict=True):
        if role == "originals":
            subsets = [_subset(pattern, project.originals_dir / scan.character.slug, scan.repeats,
                               scan.character.token, user.subset) for scan in scans]
            if stage == "stage1" and project.stage1_loss_mask == "figures":  # the copies' alpha is the weight
                subsets = [{**subset, "alpha_mask": True} for subset in subsets]
        else:
            repeats, replay_factor = stage2_repeats(project, scans) if stage == "stage2" else \
                (project.composite.repeats, 1)
            subsets = [_subset(pattern, project.composite_dir, repeats, None, user.subset)]
            if project.composite.loss_mask != "none":  # the composites' alpha is the loss weight
                subsets[0] = {**subsets[0], "alpha_mask": True}
            if stage == "stage2" and project.replay:
                subsets += [_subset(pattern, project.replay_dir / scan.character.slug, scan.repeats * replay_factor,
                                    scan.character.token, user.subset) for scan in scans]
        datasets.append({**dataset, "subsets": subsets})
    regularization = project.regularization
    if stage in regularization.folders:
        pattern = patterns[0][1]
        subset = _subset(pattern, project.regularization_dir(stage), regularization.repeats,
                         regularization.class_tokens, {})
        datasets[0]["subsets"].append({**subset, "is_reg": True})
    dataset_doc["datasets"] = datasets
    buckets = settings_from_dataset(dataset_doc.get("general", {}), datasets[-1], flat)
    return RenderedStage(stage, config, dataset_doc, sample_prompts(project, scans, buckets), tuple(notices),
                         tuple(warnings))


def merged_datasets(project: Project, stage: str, templates: Templates, user: Overrides
                    ) -> tuple[dict[str, Any], list[tuple[dict[str, Any], dict[str, Any]]], list[str]]:
    """The dataset template with the user's dataset and subset overrides: (doc, [(dataset, subset pattern)], problems).

    A stage's template has one [[datasets]] per role (see ROLES), each with one subset that is the pattern.
    """
    doc = copy.deepcopy(templates.dataset)
    roles = ROLES[stage]
    datasets = doc.get("datasets")
    shaped = isinstance(datasets, list) and len(datasets) == len(roles) and all(
        isinstance(item, dict) and isinstance(item.get("subsets"), list) and item["subsets"] for item in datasets)
    if not shaped:
        raise OnetwoError(f"{templates.dataset_file}: needs {len(roles)} [[datasets]] ({', '.join(roles)}), each with "
                          "one [[datasets.subsets]] pattern")
    where = str(templates.dataset_file)
    problems = validate_dataset_keys(doc.get("general", {}), "general", where)
    problems += validate_dataset_keys(user.dataset, "datasets", f"{project.file}: [{stage}.dataset] or --set dataset.")
    problems += validate_dataset_keys(user.subset, "subsets", f"{project.file}: [{stage}.subset] or --set subset.")
    problems += [f"{project.file}: [{stage}.subset] {key}: onetwo writes it for each subset; remove it"
                 for key in WRITTEN_SUBSET_KEYS if key in user.subset]
    problems += dataset_resolution_problems(project, stage, templates, user)
    patterns = []
    for role, item in zip(roles, datasets, strict=True):
        dataset = {key: value for key, value in item.items() if key != "subsets"}
        pattern = dict(item["subsets"][0])
        problems += validate_dataset_keys(dataset, "datasets", where)
        problems += validate_dataset_keys(pattern, "subsets", where)
        if role == "composites" and {**pattern, **user.subset}.get("flip_aug"):
            problems.append(f"{stage}: flip_aug mirrors composites without swapping their captions, teaching the "
                            "wrong left/right order; turn it off (composite.mirror flips them correctly)")
        patterns.append(({**dataset, **user.dataset}, pattern))
    return doc, patterns, problems


def dataset_resolution_problems(project: Project, stage: str, templates: Templates, user: Overrides) -> list[str]:
    """The dataset resolutions of a stage kohya would not read, each with where it was set."""
    tables = [(templates.dataset.get("general", {}), str(templates.dataset_file)),
              (user.dataset, f"{project.file}: [{stage}.dataset] or --set dataset.")]
    if "resolution" not in user.dataset:
        tables += [(item, str(templates.dataset_file)) for item in templates.dataset.get("datasets", [])
                   if isinstance(item, dict)]
    found = [resolution_problem(table["resolution"], "dataset", where) for table, where in tables
             if isinstance(table, dict) and "resolution" in table]
    return [problem for problem in found if problem]


def role_buckets(project: Project, role: str, cli: Overrides | None = None,
                 templates: Templates | None = None) -> BucketSettings:
    """The bucket settings of the dataset that trains on `role` (originals or composites) in this project's mode;
    `templates`: that stage's, when the caller has read them already. Raises when a resolution is unreadable (the
    other problems are render_stage's to report, all at once)."""
    stage = "joint" if project.mode == "joint" else {"originals": "stage1", "composites": "stage2"}[role]
    templates = templates or load_templates(project, stage)
    user = project.stage_overrides(stage).then(cli or Overrides())
    doc, patterns, _ = merged_datasets(project, stage, templates, user)
    dataset, _ = patterns[ROLES[stage].index(role)]
    flat = {**flatten_sections(templates.train), **user.train}
    try:
        return settings_from_dataset(doc.get("general", {}), dataset, flat)
    except ValueError as exc:
        where = f"{project.file}: [training] or [{stage}] or --set" if "resolution" in user.train else \
            str(templates.train_file)
        unreadable = dataset_resolution_problems(project, stage, templates, user) or [
            f"{where}: resolution = {flat.get('resolution')!r}: {exc}"]
        raise OnetwoError(f"{stage}: kohya cannot read the resolution:", unreadable) from exc


def stage_files(project: Project, stage: str) -> tuple[Path, Path, Path]:
    folder = project.stage_dir(stage)
    return folder / "config.toml", folder / "dataset.toml", folder / "sample_prompts.txt"


def write_toml(path: Path, doc: dict[str, Any], what: str) -> None:
    header = f"# Written by onetwo {__version__} for {what}; plain kohya TOML.\n"
    write_text_if_changed(path, header + tomli_w.dumps(doc))


def write_stage(project: Project, rendered: RenderedStage) -> tuple[Path, Path, Path]:
    config_file, dataset_file, prompts_file = stage_files(project, rendered.stage)
    what = f"{rendered.stage} of {project.file.name}"
    write_toml(config_file, rendered.config, what)
    write_toml(dataset_file, rendered.dataset, what)
    write_text_if_changed(prompts_file, rendered.sample_prompts)
    return config_file, dataset_file, prompts_file
