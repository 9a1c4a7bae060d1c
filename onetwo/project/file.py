"""The project file: read strictly, validated once, every path resolved against the file; → `config.Project`."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from onetwo.data.captions import template_problem
from onetwo.data.scan import IMAGE_EXTENSIONS, kohya_folder, kohya_subfolders, parent_folder_message
from onetwo.errors import OnetwoError
from onetwo.kohya.families import FAMILIES
from onetwo.project.config import (
    DEFAULT_SINGLE_CAPTION,
    FORMATS,
    GROUP_CAPTION,
    LAYOUTS,
    LOSS_MASKS,
    MODES,
    ORIGINALS_MODES,
    REPO_ROOT,
    SCENE_PLACEMENTS,
    STAGES,
    Character,
    CompositeSettings,
    Overrides,
    Project,
    Regularization,
    SampleSettings,
    SyntheticSettings,
)
from onetwo.project.strict import TableReader, did_you_mean, tomllib

# A name becomes the first caption token and part of the `A/B/COMPOSITE` token: these would split or break it.
# kohya's sample-prompt parser reads these option codes even at the start of the prompt itself.
KOHYA_PROMPT_OPTION = r"(w|h|d|s|l|g|n|ss|cn|ctr|rcfg|fs) "
FORBIDDEN_IN_NAME = {",": "a comma splits the caption token", "/": "'/' separates names in the composite token",
                     "\\": "a backslash is a path separator", "{": "braces are caption template syntax",
                     "}": "braces are caption template syntax"}


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a character token, or None when it can."""
    if not name.strip():
        return "must not be empty"
    if name != name.strip():
        return "must not start or end with whitespace"
    for char, why in FORBIDDEN_IN_NAME.items():
        if char in name:
            return f"must not contain {char!r} ({why})"
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        return "must not contain control characters"
    if "--" in name:
        return "must not contain '--' (it starts an option in kohya's sample prompt syntax)"
    if name.upper() == "COMPOSITE":
        return "'COMPOSITE' is the composite token"
    if re.match(KOHYA_PROMPT_OPTION, name, re.IGNORECASE):
        return "must not start like a kohya sample-prompt option (a letter code and a space, e.g. 'n ' or 'w ')"
    return None


def slugify(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")
    return slug or "character"


def _unique_slugs(names: list[str]) -> list[str]:
    seen: set[str] = set()
    slugs = []
    for index, name in enumerate(names):
        slug = slugify(name)
        if slug.lower() in seen:
            slug = f"{slug}_{index + 1}"
        seen.add(slug.lower())
        slugs.append(slug)
    return slugs


def _parse_color(reader: TableReader, value: Any, path: str) -> tuple[int, int, int]:
    if isinstance(value, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", value):
        return (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))
    reader.problem(path, f"must be a colour like \"#ffffff\", got {value!r}")
    return (255, 255, 255)


def class_problem(class_token: str) -> str | None:
    """Why `class_token` cannot follow a name in the kept first token, or None when it can."""
    if class_token != class_token.strip():
        return "must not start or end with whitespace"
    for char in ",{}":
        if char in class_token:
            return f"must not contain {char!r} ({FORBIDDEN_IN_NAME[char]})"
    if any(ord(char) < 32 or ord(char) == 127 for char in class_token) or "--" in class_token:
        return "must not contain control characters or '--'"
    return None


def caption_extension_problem(extension: str) -> str | None:
    if not re.fullmatch(r"\.[A-Za-z0-9_.-]+", extension) or extension.lower() in IMAGE_EXTENSIONS:
        return f"must be a caption file extension like \".txt\" or \".caption\", got {extension!r}"
    return None


def _parse_characters(reader: TableReader, raw: Any, base: Path, caption_extension: str) -> tuple[Character, ...]:
    """Each [[characters]] table; `name` and `class` default to a kohya folder's `<repeats>_<name> <class>`."""
    if not isinstance(raw, list) or not raw:
        reader.problem("characters", "add at least two [[characters]] tables with name and images")
        return ()
    names: list[str] = []
    entries: list[tuple[str, Path, int | None, bool, str, str]] = []
    for index, item in enumerate(raw):
        path = f"characters[{index}]"
        table = reader.table(item, path)
        reader.unknown(table, path, {"name", "images", "repeats", "recursive", "class", "caption_extension"})
        images = reader.get(table, path, "images", str, "", required=True)
        folder = kohya_folder(Path(images).name) if images else None
        parent = kohya_subfolders(base / images) if images and not folder and "name" not in table else []
        if parent:  # the usual slip with a kohya dataset: `images` names the folder above the character folders
            reader.problem(f"{path}.images", parent_folder_message(base / images, parent, base))
        name = reader.get(table, path, "name", str, folder.token if folder else "",
                          required=folder is None and not parent)
        class_token = reader.get(table, path, "class", str, folder.class_token if folder else "")
        repeats = reader.get(table, path, "repeats", int, None)
        if repeats is not None and repeats < 1:
            reader.problem(f"{path}.repeats", f"must be at least 1, got {repeats}")
        recursive = reader.get(table, path, "recursive", bool, False)
        extension = reader.get(table, path, "caption_extension", str, caption_extension)
        if "caption_extension" in table and (why := caption_extension_problem(extension)):
            reader.problem(f"{path}.caption_extension", why)
        if ("name" in table or name) and (why := name_problem(name)):
            where = f"{path}.name" if "name" in table else f"{path}.images"
            fix = "rename the character" if "name" in table else "set name, or rename the folder"
            reader.problem(where, f"{name!r} {why}; {fix}")
        if why := class_problem(class_token):
            reader.problem(f"{path}.class" if "class" in table else f"{path}.images", f"{class_token!r} {why}")
        if name and name.casefold() in (seen.casefold() for seen in names):
            reader.problem(f"{path}.name", f"{name!r} is used by another character; names must be unique")
        names.append(name)
        # abspath, not resolve: a symlinked folder keeps its own name (check reports where it points).
        entries.append((name, Path(os.path.abspath(base / images)), repeats, recursive, class_token, extension))
    if len(entries) < 2:
        reader.problem("characters", "the 1to2 method needs at least two characters; add another [[characters]]")
    slugs = _unique_slugs(names)
    return tuple(Character(name, images, repeats, recursive, slug, class_token, extension)
                 for (name, images, repeats, recursive, class_token, extension), slug
                 in zip(entries, slugs, strict=True))


def _parse_composite(reader: TableReader, raw: Any) -> CompositeSettings:
    path = "composite"
    table = reader.table(raw, path)
    defaults = CompositeSettings()
    reader.unknown(table, path, set(CompositeSettings.__dataclass_fields__))
    group_size = reader.get(table, path, "group_size", int, defaults.group_size)
    if group_size not in (2, 3):
        reader.problem(f"{path}.group_size", f"must be 2 (pairs) or 3 (trios), got {group_size}")
        group_size = 2
    caption = reader.get(table, path, "caption", str, defaults.caption if group_size == 2 else GROUP_CAPTION)
    if why := template_problem(caption, group_size):
        reader.problem(f"{path}.caption", why)
    layout = reader.get(table, path, "layout", str, defaults.layout)
    if layout not in LAYOUTS:
        reader.problem(f"{path}.layout", f"must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    mirror = reader.get(table, path, "mirror", (int, float), defaults.mirror)
    if not 0 <= mirror <= 1:
        reader.problem(f"{path}.mirror", f"is the share of composites mirrored (0 to 1), got {mirror}")
    fmt = reader.get(table, path, "format", str, defaults.format)
    if fmt not in FORMATS:
        reader.problem(f"{path}.format", f"must be one of {', '.join(FORMATS)} (lossless), got {fmt!r}")
    anchor = reader.get(table, path, "vertical_anchor", (int, float), defaults.vertical_anchor)
    if not 0 <= anchor <= 1:
        reader.problem(f"{path}.vertical_anchor", f"must be between 0 (top) and 1 (bottom), got {anchor}")
    settings = CompositeSettings(
        per_pair=reader.positive_int(table, path, "per_pair", defaults.per_pair),
        seed=reader.get(table, path, "seed", int, defaults.seed),
        caption=caption,
        group_size=group_size,
        width=reader.positive_int(table, path, "width", 64, minimum=64) if "width" in table else None,
        height=reader.positive_int(table, path, "height", 64, minimum=64) if "height" in table else None,
        layout=layout,
        mirror=float(mirror),
        gap=reader.positive_int(table, path, "gap", defaults.gap, minimum=0),
        background=_parse_color(reader, table["background"], f"{path}.background") if "background" in table
        else defaults.background,
        vertical_anchor=float(anchor),
        format=fmt,
        repeats=reader.positive_int(table, path, "repeats", defaults.repeats),
        trim_captions=reader.get(table, path, "trim_captions", bool, defaults.trim_captions),
        workers=reader.positive_int(table, path, "workers", defaults.workers, minimum=0),
    )
    settings = _parse_scene(reader, table, path, settings)
    if (settings.width is None) != (settings.height is None):
        reader.problem(path, "set both width and height, or neither (then the nearest kohya bucket is used)")
    if settings.width and settings.gap * (group_size - 1) >= settings.width // 2:
        reader.problem(f"{path}.gap", f"is too wide for a {settings.width} px composite")
    return settings


def _share(reader: TableReader, table: dict[str, Any], path: str, key: str, default: float, what: str) -> float:
    value = reader.get(table, path, key, (int, float), default)
    if not 0 <= value <= 1:
        reader.problem(f"{path}.{key}", f"is {what} (0 to 1), got {value}")
        return default
    return float(value)


def _parse_scene(reader: TableReader, table: dict[str, Any], path: str,
                 settings: CompositeSettings) -> CompositeSettings:
    defaults = CompositeSettings()
    scale = reader.get(table, path, "scene_scale", list, list(defaults.scene_scale))
    if not (len(scale) == 2 and all(isinstance(value, (int, float)) for value in scale)
            and 0 < scale[0] <= scale[1] <= 1):
        reader.problem(f"{path}.scene_scale", f"must be [low, high] with 0 < low <= high <= 1, got {scale!r}")
        scale = list(defaults.scene_scale)
    placement = reader.get(table, path, "scene_placement", str, defaults.scene_placement)
    if placement not in SCENE_PLACEMENTS:
        reader.problem(f"{path}.scene_placement", f"must be one of {', '.join(SCENE_PLACEMENTS)}, got {placement!r}")
    tag = reader.get(table, path, "scene_tag", str, defaults.scene_tag)
    if any(char in tag for char in ",{}"):
        reader.problem(f"{path}.scene_tag", f"is one caption tag, without ',' or braces, got {tag!r}")
    loss_mask = reader.get(table, path, "loss_mask", str, defaults.loss_mask)
    if loss_mask not in LOSS_MASKS:
        reader.problem(f"{path}.loss_mask", f"must be one of {', '.join(LOSS_MASKS)}, got {loss_mask!r}")
        loss_mask = defaults.loss_mask
    share = _share(reader, table, path, "share", 0.5, "the share of stage 2's image views that are composites") \
        if "share" in table else None
    if share is not None and share <= 0:
        reader.problem(f"{path}.share", "must be above 0: stage 2 trains on composites")
    if share is not None and "repeats" in table:
        reader.problem(f"{path}.share", "sets the composites' repeats itself; remove composite.repeats")
    return replace(
        settings,
        share=share,
        loss_mask=loss_mask,
        mask_floor=_share(reader, table, path, "mask_floor", defaults.mask_floor,
                          "the loss weight outside the figures or around the seam"),
        scene_share=_share(reader, table, path, "scene_share", defaults.scene_share, "the share of scene composites"),
        scene_scale=(float(scale[0]), float(scale[1])),
        scene_overlap=_share(reader, table, path, "scene_overlap", defaults.scene_overlap,
                             "the most two figures may overlap, as a share of the narrower"),
        scene_placement=placement,
        scene_margin=_share(reader, table, path, "scene_margin", defaults.scene_margin,
                            "the margin around each figure, as a share of its longer side"),
        scene_tag=tag.strip(),
    )


def _parse_regularization(reader: TableReader, raw: Any, base: Path) -> Regularization:
    path = "regularization"
    table = reader.table(raw, path)
    reader.unknown(table, path, {*STAGES, "class_tokens", "repeats"})
    folders = {stage: Path(os.path.abspath(base / folder)) for stage in STAGES
               if (folder := reader.get(table, path, stage, str, None))}
    class_tokens = reader.get(table, path, "class_tokens", str, "")
    if folders and not class_tokens:
        reader.problem(f"{path}.class_tokens", "missing: the caption of regularization images without a .txt "
                       "(e.g. \"1girl\")")
    return Regularization(folders, class_tokens, reader.positive_int(table, path, "repeats", 1))


def _parse_samples(reader: TableReader, raw: Any) -> SampleSettings:
    path = "samples"
    table = reader.table(raw, path)
    defaults = SampleSettings()
    reader.unknown(table, path, set(SampleSettings.__dataclass_fields__))
    return SampleSettings(
        negative=reader.get(table, path, "negative", str, defaults.negative),
        steps=reader.positive_int(table, path, "steps", defaults.steps),
        scale=float(reader.get(table, path, "scale", (int, float), defaults.scale)),
        seed=reader.get(table, path, "seed", int, defaults.seed),
        tags_per_character=reader.positive_int(table, path, "tags_per_character", defaults.tags_per_character, 0),
        seeds=reader.positive_int(table, path, "seeds", defaults.seeds),
    )


def _parse_synthetic(reader: TableReader, raw: Any) -> SyntheticSettings:
    path = "synthetic"
    table = reader.table(raw, path)
    defaults = SyntheticSettings()
    reader.unknown(table, path, set(SyntheticSettings.__dataclass_fields__))
    max_share = _share(reader, table, path, "max_share", defaults.max_share,
                       "the most of a character's composite deck that may be synthetic")
    if max_share >= 1:
        reader.problem(f"{path}.max_share", "must be below 1: a deck of synthetic images only has no real image left")
        max_share = defaults.max_share
    margin = float(reader.get(table, path, "margin", (int, float), defaults.margin))
    if margin < 0:
        reader.problem(f"{path}.margin", f"must be at least 0, got {margin}")
    bits = reader.positive_int(table, path, "duplicate_bits", defaults.duplicate_bits, 0)
    if bits > 64:
        reader.problem(f"{path}.duplicate_bits", f"counts differing bits of a 64-bit hash (0 to 64), got {bits}")
    return SyntheticSettings(
        per_character=reader.positive_int(table, path, "per_character", defaults.per_character),
        below=reader.positive_int(table, path, "below", defaults.below, 0),
        max_share=max_share, margin=max(0.0, margin), duplicate_bits=min(64, bits),
        seed=reader.get(table, path, "seed", int, defaults.seed),
        stage1=reader.get(table, path, "stage1", bool, defaults.stage1),
    )


def _parse_overrides(reader: TableReader, raw: Any, path: str) -> Overrides:
    table = dict(reader.table(raw, path))
    dataset = reader.table(table.pop("dataset", {}), f"{path}.dataset")
    subset = reader.table(table.pop("subset", {}), f"{path}.subset")
    return Overrides(train=table, dataset=dict(dataset), subset=dict(subset))


def default_templates(model: str) -> Path:
    return REPO_ROOT / "templates" / FAMILIES[model].templates


def python_setting(value: str, base: Path) -> str:
    """A path (relative to `base`, links kept: a venv's python is a link) or a bare command name for PATH."""
    if os.sep in value or "/" in value or value.startswith(("~", ".")):
        return os.path.abspath(base / Path(value).expanduser())
    return value


def _default_sd_scripts() -> Path:
    from_env = os.environ.get("ONETWO_SD_SCRIPTS")
    return Path(from_env).expanduser() if from_env else REPO_ROOT / "third_party" / "sd-scripts"


def parse_project(data: dict[str, Any], file: Path) -> Project:
    """Validate the parsed project file; raise one OnetwoError listing every problem."""
    file = file.resolve()
    base = file.parent
    problems: list[str] = []
    reader = TableReader(problems)
    reader.unknown(data, "", {"project", "characters", "composite", "samples", "accelerate", "regularization",
                              "training", "synthetic", *STAGES})
    project = reader.table(data.get("project", {}), "project")
    reader.unknown(project, "project", {"name", "base_model", "work_dir", "output_dir", "sd_scripts", "templates",
                                        "caption", "model", "mode", "replay", "originals", "caption_extension",
                                        "python", "attention_fallback",
                                        *{slot.key for family in FAMILIES.values() for slot in family.files}})
    model = reader.get(project, "project", "model", str, "sd1")
    if model not in FAMILIES:
        reader.problem("project.model", f"must be one of {', '.join(FAMILIES)}, got {model!r}"
                                        f"{did_you_mean(model, FAMILIES)}")
        model = "sd1"
    mode = reader.get(project, "project", "mode", str, "sequential")
    if mode not in MODES:
        reader.problem("project.mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    replay = reader.get(project, "project", "replay", (int, float), 0.0)
    if not 0 <= replay <= 1:
        reader.problem("project.replay", f"is the share of originals stage 2 trains on too (0 to 1), got {replay}")
    name = reader.get(project, "project", "name", str, "", required=True)
    if name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        reader.problem("project.name", f"{name!r} names output files: use letters, digits, '.', '_' or '-'")
    base_model = reader.get(project, "project", "base_model", str, "", required=True)
    single_caption = reader.get(project, "project", "caption", str, DEFAULT_SINGLE_CAPTION)
    if "{name}" not in single_caption:
        reader.problem("project.caption", "must contain {name} (the character token comes first)")
    work_dir = reader.get(project, "project", "work_dir", str, "build")
    output_dir = reader.get(project, "project", "output_dir", str, "output")
    sd_scripts = reader.get(project, "project", "sd_scripts", str, None)
    python = reader.get(project, "project", "python", str, None)
    attention_fallback = reader.get(project, "project", "attention_fallback", bool, True)
    templates = reader.get(project, "project", "templates", str, None)
    originals = reader.get(project, "project", "originals", str, "link")
    if originals not in ORIGINALS_MODES:
        reader.problem("project.originals", f"must be one of {', '.join(ORIGINALS_MODES)}, got {originals!r}")
    caption_extension = reader.get(project, "project", "caption_extension", str, "")
    if why := caption_extension_problem(caption_extension) if caption_extension else None:
        reader.problem("project.caption_extension", why)
    model_files = _parse_model_files(reader, project, model, base)
    characters = _parse_characters(reader, data.get("characters"), base, caption_extension)
    composite = _parse_composite(reader, data.get("composite", {}))
    samples = _parse_samples(reader, data.get("samples", {}))
    synthetic = _parse_synthetic(reader, data.get("synthetic", {}))
    regularization = _parse_regularization(reader, data.get("regularization", {}), base)
    accelerate = dict(reader.table(data.get("accelerate", {}), "accelerate"))
    for key, value in accelerate.items():
        if not isinstance(value, (str, int, float, bool)):
            reader.problem(f"accelerate.{key}", "must be a string, number or true/false")
    stage1_table = dict(reader.table(data.get("stage1", {}), "stage1"))
    stage1_loss_mask = reader.get(stage1_table, "stage1", "loss_mask", str, "none")
    if stage1_loss_mask not in ("none", "figures"):
        reader.problem("stage1.loss_mask", f"must be none or figures, got {stage1_loss_mask!r}")
    stage1_mask_floor = _share(reader, stage1_table, "stage1", "mask_floor", 0.25,
                               "the loss weight outside the figures")
    for key in ("loss_mask", "mask_floor"):  # onetwo's keys, not train_network.py's
        stage1_table.pop(key, None)
    overrides = {key: _parse_overrides(reader, stage1_table if key == "stage1" else data.get(key, {}), key)
                 for key in ("training", *STAGES)}
    if composite.share is not None and mode == "joint":
        reader.problem("composite.share", "is the composites' share of stage 2; joint mode has no stage 2")
    elif composite.share is not None and composite.share < 1 and not replay:
        reader.problem("composite.share", f"is {composite.share}: the rest of stage 2 are replayed originals, so "
                       "set project.replay (e.g. 0.5), or share = 1")
    elif composite.share == 1 and replay:
        reader.problem("composite.share", "is 1 (composites only), but project.replay replays originals; "
                       "remove one of them")
    if problems:
        raise OnetwoError(f"{file}: the project file has {len(problems)} problem(s):", problems)
    return Project(
        file=file,
        name=name,
        base_model=(base / base_model).resolve(),
        work_dir=(base / work_dir).resolve(),
        output_dir=(base / output_dir).resolve(),
        sd_scripts=(base / sd_scripts).resolve() if sd_scripts else _default_sd_scripts().resolve(),
        templates=(base / templates).resolve() if templates else default_templates(model),
        single_caption=single_caption,
        model=model,
        mode=mode,
        replay=float(replay),
        characters=characters,
        composite=composite,
        samples=samples,
        accelerate=accelerate,
        regularization=regularization,
        overrides=overrides,
        originals=originals,
        python=python_setting(python, base) if python else None,
        attention_fallback=attention_fallback,
        stage1_loss_mask=stage1_loss_mask,
        stage1_mask_floor=stage1_mask_floor,
        model_files=model_files,
        synthetic=synthetic,
    )


def _parse_model_files(reader: TableReader, project: dict[str, Any], model: str, base: Path) -> dict[str, Path]:
    """The family's file slots in [project]: required ones must be there, another family's are refused."""
    slots = {slot.key: slot for slot in FAMILIES[model].files}
    found: dict[str, Path] = {}
    for family in FAMILIES.values():
        for slot in family.files:
            if slot.key in project and slot.key not in slots:
                reader.problem(f"project.{slot.key}", f"is {slot.what}, a file of project.model = "
                                                      f"{family.name!r}, not of {model!r}; remove it")
    for key, slot in slots.items():
        if slot.required and key not in project:
            reader.problem(f"project.{key}", f"missing: project.model = {model!r} needs {slot.what} "
                                             f"({FAMILIES[model].train_script} --{slot.argument}); add its path")
        value = reader.get(project, "project", key, str, None)
        if value:
            found[key] = (base / value).resolve()
    return found


def load_project(file: Path) -> Project:
    if not file.is_file():
        raise OnetwoError(f"{file}: no such project file; write one (see docs/project-file.md) "
                          "or pass --project PATH")
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise OnetwoError(f"{file}: not UTF-8 text ({exc.reason}); save it as UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise OnetwoError(f"{file}: not valid TOML: {exc}") from exc
    return parse_project(data, file)
