"""Scan character and regularization folders into images + tags, without decoding a single pixel; kohya's
`<repeats>_<token> <class>` folder names."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import tomli_w

from onetwo.data.captions import parse_tags, without_token
from onetwo.errors import OnetwoError
from onetwo.project.config import CAPTION_EXTENSIONS, Character, Project, kohya_token

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
KOHYA_REPEATS_FOLDER = re.compile(r"^(\d+)_(.+)$")


@dataclass(frozen=True)
class SourceImage:
    path: Path
    rel: str
    tags: tuple[str, ...]
    captioned: bool
    size: int
    mtime_ns: int
    width: int = 0  # upright pixel size, known once `onetwo.data.check` has decoded the image
    height: int = 0
    kohya_differs: str = ""  # why kohya's loader would not see what onetwo sees (then stage 1 trains on a copy)
    synthetic: bool = False  # drawn by stage 1 and kept by `onetwo synth` (onetwo.synth): stage 2's decks only

    @property
    def fingerprint(self) -> str:
        return f"{self.rel}:{self.size}:{self.mtime_ns}"


@dataclass(frozen=True)
class CharacterImages:
    character: Character
    images: tuple[SourceImage, ...]
    repeats: int
    warnings: tuple[str, ...]

    @property
    def uncaptioned(self) -> tuple[SourceImage, ...]:
        return tuple(image for image in self.images if not image.captioned)


@dataclass(frozen=True)
class KohyaFolder:
    """kohya's `<repeats>_<token> <class>` folder name: `10_alice girl` → 10, "alice", "girl"."""

    repeats: int
    token: str
    class_token: str

    @property
    def caption(self) -> str:
        """What kohya captions an image of the folder with when it has no caption file."""
        return kohya_token(self.token, self.class_token)


def kohya_folder(folder_name: str) -> KohyaFolder | None:
    """Parse kohya's folder convention (sd-scripts: repeats before the first '_', the rest is the caption); None
    when the name does not follow it. A dataset TOML ignores the convention, so onetwo writes it out explicitly."""
    match = KOHYA_REPEATS_FOLDER.match(folder_name)
    if not match or int(match.group(1)) < 1:
        return None
    token, _, class_token = match.group(2).strip().partition(" ")
    return KohyaFolder(int(match.group(1)), token, class_token.strip())


def repeats_from_folder(folder: Path) -> int | None:
    parsed = kohya_folder(folder.name)
    return parsed.repeats if parsed else None


def read_caption(path: Path) -> tuple[str, ...]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise OnetwoError(f"{path}: caption is not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from exc
    return parse_tags(text)


def caption_files(image: Path, extension: str) -> list[Path]:
    """The image's caption files that exist: the one of `caption_extension`, else .txt and .caption in that order."""
    extensions = (extension,) if extension else CAPTION_EXTENSIONS
    return [candidate for candidate in (image.with_suffix(ext) for ext in extensions) if candidate.is_file()]


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        found.extend(Path(root) / name for name in files
                     if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS)
    return sorted(found)


def kohya_subfolders(folder: Path) -> list[Path]:
    """The subfolders named the kohya way (`10_alice girl`); none when `folder` is not a folder."""
    if not folder.is_dir():
        return []
    return sorted(child for child in folder.iterdir() if child.is_dir() and kohya_folder(child.name))


def parent_folder_message(folder: Path, kohya_folders: list[Path], base: Path | None) -> str:
    """`images` names a folder of kohya folders: list them and the [[characters]] tables that train each."""
    def shown(child: Path) -> str:
        return os.path.relpath(child, base) if base else str(child)

    tables = "\n".join("[[characters]]\n" + tomli_w.dumps({"images": Path(shown(child)).as_posix()})
                       for child in kohya_folders)
    listed = ", ".join(child.name for child in kohya_folders)
    return (f"{folder}: holds kohya folders ({listed}), not images; give each its own [[characters]] table (name, "
            "class and repeats come from the folder name):\n\n" + tables.strip())


def drop_own_tokens(scan: CharacterImages) -> CharacterImages:
    """A character's tags without its name or `name class` (any case and spacing): the caption puts it first."""
    character = scan.character
    images = tuple(replace(image, tags=without_token(image.tags, character.name, character.class_token))
                   for image in scan.images)
    return replace(scan, images=images)


def scan_character(character: Character, base: Path | None = None) -> CharacterImages:
    folder = character.images
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise OnetwoError(f"{folder}: the images folder of character {character.name!r} {what}; "
                          "fix `images` in the project file")
    images: list[SourceImage] = []
    stems: dict[str, Path] = {}
    warnings: list[str] = []
    problems: list[str] = []
    for path in _image_files(folder, character.recursive):
        stem_key = str(path.with_suffix("")).casefold()
        if stem_key in stems:
            problems.append(f"{path}: shares its name with {stems[stem_key].name}, so both would use the same "
                            "caption file; rename one of them")
            continue
        stems[stem_key] = path
        found = caption_files(path, character.caption_extension)
        if len(found) > 1:
            warnings.append(f"{found[0]} and {found[1].name}: two caption files for {path.name}; {found[0].name} is "
                            f"used (set caption_extension = \"{found[1].suffix}\" to use the other)")
        captioned = bool(found)
        try:
            tags = read_caption(found[0]) if captioned else ()
        except OnetwoError as exc:
            problems.append(str(exc))
            continue
        if captioned and not tags:
            warnings.append(f"{found[0]}: empty caption; the character token alone is used")
        stat = path.stat()
        images.append(SourceImage(path=path.resolve(), rel=path.relative_to(folder).as_posix(), tags=tags,
                                  captioned=captioned, size=stat.st_size, mtime_ns=stat.st_mtime_ns))
    if problems:
        raise OnetwoError(f"{folder}: {len(problems)} problem(s) in the images of {character.name!r}:", problems)
    if not images:
        if not character.recursive and (kohya_folders := kohya_subfolders(folder)):
            raise OnetwoError(parent_folder_message(folder, kohya_folders, base))
        hint = "" if character.recursive else " (set recursive = true to look in subfolders)"
        raise OnetwoError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) for character "
                          f"{character.name!r}{hint}")
    repeats = character.repeats or repeats_from_folder(folder) or 1
    return CharacterImages(character, tuple(images), repeats, tuple(warnings))


def scan_regularization(project: Project, stage: str) -> CharacterImages | None:
    """The stage's regularization folder (`regularization.<stage>`) scanned like a character's, its class tokens in
    the place of a name; None when the stage has none."""
    regularization = project.regularization
    folder = regularization.folders.get(stage)
    if folder is None:
        return None
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise OnetwoError(f"{folder}: the regularization folder of {stage} {what}; fix regularization.{stage} in the "
                          "project file")
    character = Character(regularization.class_tokens, folder, regularization.repeats, False, "regularization")
    return scan_character(character)


def scan_project(project: Project) -> list[CharacterImages]:
    problems: list[str] = []
    scans: list[CharacterImages] = []
    for character in project.characters:
        try:
            scans.append(drop_own_tokens(scan_character(character, project.file.parent)))
        except OnetwoError as exc:
            problems.append(str(exc))
    if problems:
        raise OnetwoError(f"{project.file}: {len(problems)} character folder(s) cannot be used:", problems)
    return scans
