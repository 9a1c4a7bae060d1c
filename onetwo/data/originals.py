"""Stage 1's training folders: the user's images plus onetwo's captions, inside the work dir.

kohya writes latent caches and reads captions beside the images; keeping the folders in the work dir keeps both away
from the user's folders. An image kohya would read differently from onetwo (see `imaging.kohya_difference`) is
trained from an upright, flattened RGB PNG copy; the rest are links, or plain copies with `originals = "copy"`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from onetwo.data.captions import single_caption
from onetwo.data.pixels import load_upright, save_image
from onetwo.data.scan import CharacterImages, SourceImage
from onetwo.fsutil import atomic_path, write_text_atomic, write_text_if_changed

MANIFEST_NAME = ".onetwo-files.json"
MANIFEST_VERSION = 2
NORMALISED_VERSION = 1  # bump when load_upright changes what a normalised copy holds


@dataclass(frozen=True)
class LinkedImage:
    name: str
    source: Path
    caption: str
    normalise: str = ""  # why kohya would read the source differently from onetwo: then a normalised copy
    fingerprint: str = ""  # the source's size and mtime: a copy is rebuilt when they change


def plan_folder(scan: CharacterImages, caption_template: str) -> list[LinkedImage]:
    """Flat, unique file names (subfolders joined with '__'), each with the caption onetwo writes for it; a
    normalised copy is a PNG of the same stem, so it pairs with the same caption."""
    character = scan.character
    entries = []
    for image in scan.images:
        flat = image.rel.replace("/", "__")
        name = f"{Path(flat).stem}.png" if image.kohya_differs else flat
        caption = single_caption(caption_template, character.name, image.tags, character.class_token)
        entries.append(LinkedImage(name, image.path, caption, image.kohya_differs, f"{image.size}:{image.mtime_ns}"))
    return entries


def describe_folder(entries: Sequence[LinkedImage], mode: str) -> str:
    """`3 linked, 1 normalised copy`: how a folder written by `write_folder` holds its images."""
    normalised = sum(1 for entry in entries if entry.normalise)
    plain = len(entries) - normalised
    parts = [f"{plain} {'copied' if mode == 'copy' else 'linked'}"] if plain else []
    if normalised:
        parts.append(f"{normalised} normalised cop{'y' if normalised == 1 else 'ies'}")
    return ", ".join(parts) or "none"


def plan_regularization(images: Sequence[SourceImage], class_tokens: str) -> list[LinkedImage]:
    """Class images keep their own tags as they are; untagged ones get the class tokens."""
    return [LinkedImage(image.rel.replace("/", "__"), image.path, ", ".join(image.tags) or class_tokens,
                        fingerprint=f"{image.size}:{image.mtime_ns}") for image in images]


def replay_selection(entries: Sequence[LinkedImage], fraction: float, seed: int) -> list[LinkedImage]:
    """A seeded share of a character's originals (at least one when the share is above zero), in name order."""
    if fraction <= 0 or not entries:
        return []
    count = max(1, round(len(entries) * fraction))
    chosen = random.Random(f"onetwo-replay:{seed}").sample(list(entries), count)
    return sorted(chosen, key=lambda entry: entry.name)


def _link(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(source, tmp)
    except OSError:  # filesystems without symlinks: a copy costs disk, never the user's data
        shutil.copy2(source, tmp)
    os.replace(tmp, target)


def _copy(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _read_manifest(manifest: Path) -> tuple[set[str], dict[str, str]]:
    """(the files onetwo made in the folder, the source key each copy was made from); a version-1 list is read too."""
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set(), {}
    if isinstance(data, list):
        return {str(name) for name in data}, {}
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return set(), {}
    copies = data.get("copies") if isinstance(data.get("copies"), dict) else {}
    return {str(name) for name in data["files"]}, {str(key): str(value) for key, value in copies.items()}


def _write_manifest(manifest: Path, files: set[str], copies: dict[str, str]) -> None:
    doc = {"version": MANIFEST_VERSION, "files": sorted(files), "copies": dict(sorted(copies.items()))}
    write_text_atomic(manifest, json.dumps(doc, indent=0) + "\n")


def write_folder(folder: Path, entries: Sequence[LinkedImage], mode: str = "link",
                 background: tuple[int, int, int] = (255, 255, 255)) -> int:
    """Make `folder` hold exactly the planned images and captions; touch nothing onetwo did not create there.

    Links (or plain copies with mode "copy"), and a normalised copy of each entry that asks for one; a copy is
    rebuilt only when its source's size or mtime (or, for a normalised one, the background) changed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / MANIFEST_NAME
    previous, made_from = _read_manifest(manifest)
    wanted = {entry.name for entry in entries} | {f"{Path(entry.name).stem}.txt" for entry in entries}
    for stale in sorted(previous - wanted):
        (folder / stale).unlink(missing_ok=True)
    copies = {name: key for name, key in made_from.items() if name in wanted}
    _write_manifest(manifest, previous | wanted, copies)  # a run killed below still knows what it made
    changed = 0
    for entry in entries:
        target = folder / entry.name
        if entry.normalise or mode == "copy":
            kind = f"normalised {NORMALISED_VERSION} on {bytes(background).hex()}" if entry.normalise else "copy"
            key = f"{entry.source}:{entry.fingerprint}:{kind}"
            if copies.get(entry.name) != key or target.is_symlink() or not target.is_file():
                if entry.normalise:  # both write a temporary file and rename it over the target (or a link)
                    save_image(load_upright(entry.source, background), target, "png")
                else:
                    _copy(entry.source, target)
                changed += 1
            copies[entry.name] = key
        else:
            copies.pop(entry.name, None)
            if not (target.is_symlink() and Path(os.readlink(target)) == entry.source):
                _link(entry.source, target)
                changed += 1
        changed += write_text_if_changed(target.with_suffix(".txt"), entry.caption)
    _write_manifest(manifest, wanted, copies)
    return changed
