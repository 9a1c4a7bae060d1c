"""`onetwo init`: a commented project file from a folder of character folders (kohya's `10_alice girl`, or plain).

Surveying the folders is the I/O edge; the document is built by a pure function, every value by tomli_w (which
cannot write comments), with the comment lines added around the values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

from onetwo.data.scan import IMAGE_EXTENSIONS, kohya_folder
from onetwo.errors import OnetwoError
from onetwo.fsutil import write_text_atomic
from onetwo.kohya.families import FAMILIES
from onetwo.project.config import CAPTION_EXTENSIONS, kohya_token
from onetwo.project.file import class_problem, name_problem, slugify

# A path that cannot exist by accident: `check` reports it as a missing base model, naming project.base_model.
BASE_MODEL_PLACEHOLDER = "CHANGE-ME/base-model.safetensors"
# onetwo's own output folders beside the project file: never characters, though they hold images.
OWN_FOLDERS = ("build", "output")


@dataclass(frozen=True)
class CharacterFolder:
    """What one character folder holds, and what its name says in kohya's convention."""

    folder: Path
    name: str
    class_token: str
    repeats: int | None
    images: int
    recursive: bool
    captions: dict[str, int]  # caption extension → images that have such a caption file
    both: int  # images with more than one caption file
    notes: tuple[str, ...] = field(default=())

    @property
    def uncaptioned(self) -> int:
        return self.images - sum(self.captions.values()) + self.both


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        found += [Path(root) / name for name in files
                  if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(found)


def survey_folder(folder: Path) -> CharacterFolder | None:
    """The folder as a character: name, class and repeats from `<repeats>_<name> <class>`, counts of images and
    caption files; None when it holds no image at all."""
    recursive = False
    images = _images_in(folder, recursive=False)
    if not images:
        recursive, images = True, _images_in(folder, recursive=True)
    if not images:
        return None
    captions = {extension: sum(1 for image in images if image.with_suffix(extension).is_file())
                for extension in CAPTION_EXTENSIONS}
    both = sum(1 for image in images
               if sum(image.with_suffix(extension).is_file() for extension in CAPTION_EXTENSIONS) > 1)
    parsed = kohya_folder(folder.name)
    name, class_token = (parsed.token, parsed.class_token) if parsed else (folder.name, "")
    notes = []
    if why := name_problem(name):
        notes.append(f"the folder name gives the name {name!r}, which {why}: written as {slugify(name)!r}")
        name = slugify(name)
    if class_token and (why := class_problem(class_token)):
        notes.append(f"the class {class_token!r} from the folder name {why}: left out")
        class_token = ""
    return CharacterFolder(folder, name, class_token, parsed.repeats if parsed else None, len(images), recursive,
                           captions, both, tuple(notes))


def survey(root: Path, project_dir: Path) -> tuple[list[CharacterFolder], list[str]]:
    """Every subfolder of `root` that holds images, in name order, and what was passed over and why."""
    if not root.is_dir():
        raise OnetwoError(f"{root}: not a folder; give `onetwo init` the folder that holds one folder per character")
    found: list[CharacterFolder] = []
    passed_over: list[str] = []
    for folder in sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")):
        if folder.parent.resolve() == project_dir.resolve() and folder.name in OWN_FOLDERS:
            passed_over.append(f"{folder.name}/: onetwo's own output folder")
            continue
        character = survey_folder(folder)
        if character is None:
            passed_over.append(f"{folder.name}/: no images")
        else:
            found.append(character)
    if len(found) < 2:
        loose = _images_in(root, recursive=False)
        held = f"holds {len(loose)} images itself and " if loose else ""
        raise OnetwoError(f"{root}: {held}has {len(found)} subfolder(s) with images; `onetwo init` needs the folder "
                          "that holds one folder per character (at least two, e.g. `img/` holding `10_alice girl/` "
                          "and `10_bob boy/`)", passed_over)
    return _unique_names(found), passed_over


def _unique_names(found: Sequence[CharacterFolder]) -> list[CharacterFolder]:
    """Two folders of one character (`10_alice girl`, `5_alice girl`) would clash: number the later ones."""
    seen: set[str] = set()
    unique = []
    for character in found:
        name = character.name
        suffix = 2
        while name.casefold() in seen:
            name, suffix = f"{character.name}_{suffix}", suffix + 1
        seen.add(name.casefold())
        if name != character.name:
            note = f"{character.name!r} names another folder too: written as {name!r}; merge the folders or rename"
            character = replace(character, name=name, notes=(*character.notes, note))
        unique.append(character)
    return unique


def _value(key: str, value: Any) -> str:
    return tomli_w.dumps({key: value})


def _commented(key: str, value: Any) -> str:
    """An example setting, commented out: the value still written by tomli_w."""
    return "# " + _value(key, value)


def _caption_comment(character: CharacterFolder) -> str:
    counts = ", ".join(f"{count} {extension}" for extension, count in character.captions.items())
    where = " (in subfolders)" if character.recursive else ""
    token = kohya_token(character.name, character.class_token)
    text = (f"# {character.folder.name}: {character.images} images{where}; caption files: {counts}; "
            f"{character.uncaptioned} without one (captioned `{token}` alone)\n")
    if character.both:
        text += (f"# {character.both} image(s) with both a .txt and a .caption file: set caption_extension to the one "
                 "to read\n")
    return text + "".join(f"# note: {note}\n" for note in character.notes)


def model_lines(model: str) -> list[str]:
    """project.model and, for a family with other files (Anima), a placeholder or a commented example for each."""
    family = FAMILIES[model]
    if not family.files:
        return ["# for an SDXL base model:\n", _commented("model", "sdxl")]
    lines = [_value("model", model)]
    for slot in family.files:
        where = f"{family.train_script} --{slot.argument}"
        placeholder = f"CHANGE-ME/{slot.key.replace('_', '-')}"
        if slot.required:
            lines += [f"# {slot.what} ({where}). Replace the placeholder.\n", _value(slot.key, placeholder)]
        else:
            lines += [f"# optional: {slot.what} ({where})\n", _commented(slot.key, placeholder)]
    return lines


def project_document(characters: Sequence[CharacterFolder], project_dir: Path, project_name: str,
                     source: str, passed_over: Sequence[str] = (), model: str = "sd1") -> str:
    """The commented project file: [project] with the base model to fill in, one [[characters]] per folder."""
    parts = [
        f"# onetwo project file, written by `onetwo init {source}`. Relative paths are relative to this file.\n",
        "# Next: set base_model, then `onetwo check`, `onetwo preview`, `onetwo train stage1`.\n",
        "\n[project]\n",
        _value("name", project_name),
        "# The model to train on: a .safetensors or .ckpt file or a diffusers folder. Replace the placeholder.\n",
        _value("base_model", BASE_MODEL_PLACEHOLDER),
        *model_lines(model),
        _value("work_dir", "build"),
        _value("output_dir", "output"),
    ]
    for character in characters:
        parts += ["\n", _caption_comment(character), "[[characters]]\n", _value("name", character.name)]
        if character.class_token:
            parts.append(_value("class", character.class_token))
        parts.append(_value("images", _relative(character.folder, project_dir)))
        if character.repeats is not None:
            parts.append(_value("repeats", character.repeats))
        if character.recursive:
            parts.append(_value("recursive", True))
    parts += ["\n[composite]\n", "# composites per pair of characters, in both orders:\n",
              _value("per_pair", 40)]
    if passed_over:
        parts += ["\n# Folders passed over:\n", *(f"#   {line}\n" for line in passed_over)]
    return "".join(parts)


def _relative(folder: Path, project_dir: Path) -> str:
    try:
        return Path(os.path.relpath(folder.resolve(), project_dir.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return folder.resolve().as_posix()


def project_name_for(project_dir: Path) -> str:
    """The project folder's name as an output-file prefix (letters, digits, '.', '_', '-')."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", project_dir.resolve().name).strip("._-")
    return name or "onetwo"


def init_project(root: Path, target: Path, source: str = ".", model: str = "sd1") -> tuple[Path, list[CharacterFolder]]:
    """Write the project file for the character folders under `root` (`source` as the user wrote it) to
    `target`; never overwrites."""
    if target.exists():
        raise OnetwoError(f"{target.resolve()}: already exists, and `onetwo init` does not overwrite a project file; "
                          "move it away, or write the new one elsewhere with -o FILE")
    characters, passed_over = survey(root, target.parent)
    text = project_document(characters, target.parent, project_name_for(target.parent), source, passed_over, model)
    write_text_atomic(target, text)
    return target, characters
