"""The training folders of the user's own images (stage 1's originals, stage 2's replayed share, the regularization
images): the images plus onetwo's captions, inside the work dir.

kohya writes latent caches and reads captions beside the images; keeping the folders in the work dir keeps both away
from the user's folders. An image kohya would read differently from onetwo (see `pixels.kohya_difference`) is
trained from an upright, flattened RGB PNG copy; the rest are links, or plain copies with `originals = "copy"` (or
where the file system refuses links, which `FolderWrite` reports).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from PIL import Image

from onetwo.data.captions import single_caption
from onetwo.data.pixels import load_upright, save_image, weighted, with_alpha
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
    weight: str = ""  # a figure mask: then an RGBA copy whose alpha is the loss weight (sd-scripts' alpha_mask)
    floor: float = 0.0  # the weight where the mask is 0


@dataclass
class FolderWrite:
    """What `write_folder` did, and how the folder now holds its images."""

    changed: int = 0  # files written or removed
    linked: int = 0
    copied: int = 0  # plain copies asked for (originals = "copy")
    copied_for_links: int = 0  # plain copies made (now or before) because the file system refused a link
    normalised: int = 0
    link_error: str = ""  # why a link failed in this run

    def __add__(self, other: FolderWrite) -> FolderWrite:
        counts = {item.name: getattr(self, item.name) + getattr(other, item.name) for item in fields(self)
                  if item.name != "link_error"}
        return FolderWrite(**counts, link_error=self.link_error or other.link_error)

    def describe(self) -> str:
        """`3 linked, 1 normalised copy`, and plain copies made because links failed, with why."""
        parts = [f"{self.linked} linked"] if self.linked else []
        if self.copied:
            parts.append(f"{self.copied} copied")
        if self.copied_for_links:
            why = f" ({self.link_error})" if self.link_error else ""
            parts.append(f"{self.copied_for_links} copied because the file system refused links{why}")
        if self.normalised:
            parts.append(f"{self.normalised} normalised cop{'y' if self.normalised == 1 else 'ies'}")
        return ", ".join(parts) or "none"


def _entry(image: SourceImage, caption: str) -> LinkedImage:
    """A flat, unique file name (subfolders joined with '__'); a normalised copy is a PNG of the same stem, so it
    pairs with the same caption."""
    flat = image.rel.replace("/", "__")
    name = f"{Path(flat).stem}.png" if image.kohya_differs else flat
    return LinkedImage(name, image.path, caption, image.kohya_differs, f"{image.size}:{image.mtime_ns}")


def plan_folder(scan: CharacterImages, caption_template: str) -> list[LinkedImage]:
    """Each image with the caption onetwo writes for it."""
    character = scan.character
    return [_entry(image, single_caption(caption_template, character.name, image.tags, character.class_token))
            for image in scan.images]


def with_weights(entries: Sequence[LinkedImage], images: Sequence[SourceImage], masks: dict[Path, str],
                 floor: float) -> list[LinkedImage]:
    """The entries as RGBA copies (`<stem>.png`) weighted by each source's figure mask."""
    by_path = {image.path: image for image in images}
    return [replace(entry, name=f"{Path(entry.name).stem}.png", weight=masks[entry.source], floor=floor)
            if by_path.get(entry.source) else entry for entry in entries]


def plan_regularization(images: Sequence[SourceImage], class_tokens: str) -> list[LinkedImage]:
    """Class images keep their own tags as they are; untagged ones get the class tokens."""
    return [_entry(image, ", ".join(image.tags) or class_tokens) for image in images]


def replay_selection(entries: Sequence[LinkedImage], fraction: float, seed: int) -> list[LinkedImage]:
    """A seeded share of a character's originals (at least one when the share is above zero), in name order."""
    if fraction <= 0 or not entries:
        return []
    count = max(1, round(len(entries) * fraction))
    chosen = random.Random(f"onetwo-replay:{seed}").sample(list(entries), count)
    return sorted(chosen, key=lambda entry: entry.name)


def _link(source: Path, target: Path) -> str:
    """Link `target` to `source`; where the file system refuses the link, copy instead and return why."""
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    refused = ""
    try:
        os.symlink(source, tmp)
    except OSError as exc:  # file systems without symlinks: a copy costs disk, never the user's data
        refused = exc.strerror or str(exc)
        shutil.copy2(source, tmp)
    os.replace(tmp, target)
    return refused


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
                 background: tuple[int, int, int] = (255, 255, 255)) -> FolderWrite:
    """Make `folder` hold exactly the planned images and captions; touch nothing onetwo did not create there.

    Links (or plain copies with mode "copy", or where a link fails), and a normalised copy of each entry that asks
    for one; a copy is rebuilt only when its source's size or mtime (or, for a normalised one, the background)
    changed, so a file system without links is not copied to again on every run.
    """
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / MANIFEST_NAME
    previous, made_from = _read_manifest(manifest)
    wanted = {entry.name for entry in entries} | {f"{Path(entry.name).stem}.txt" for entry in entries}
    for stale in sorted(previous - wanted):
        (folder / stale).unlink(missing_ok=True)
    copies = {name: key for name, key in made_from.items() if name in wanted}
    _write_manifest(manifest, previous | wanted, copies)  # a run killed below still knows what it made
    result = FolderWrite()
    for entry in entries:
        target = folder / entry.name
        copy_is_current = not target.is_symlink() and target.is_file()
        if entry.weight or entry.normalise or mode == "copy":
            kind = f"normalised {NORMALISED_VERSION} on {bytes(background).hex()}" if entry.normalise else "copy"
            if entry.weight:
                kind = f"weighted {NORMALISED_VERSION} on {bytes(background).hex()} by {entry.weight}, {entry.floor}"
            key = f"{entry.source}:{entry.fingerprint}:{kind}"
            if copies.get(entry.name) != key or not copy_is_current:
                if entry.weight:
                    with Image.open(entry.weight) as mask:
                        weight = weighted(mask.convert("L"), entry.floor)
                    save_image(with_alpha(load_upright(entry.source, background), weight), target, "png")
                elif entry.normalise:  # both write a temporary file and rename it over the target (or a link)
                    save_image(load_upright(entry.source, background), target, "png")
                else:
                    _copy(entry.source, target)
                result.changed += 1
            copies[entry.name] = key
            if entry.normalise or entry.weight:
                result.normalised += 1
            else:
                result.copied += 1
        else:
            fallback_key = f"{entry.source}:{entry.fingerprint}:copy where links fail"
            if copies.get(entry.name) == fallback_key and copy_is_current:
                result.copied_for_links += 1
            elif target.is_symlink() and Path(os.readlink(target)) == entry.source:
                copies.pop(entry.name, None)
                result.linked += 1
            else:
                refused = _link(entry.source, target)
                result.changed += 1
                if refused:
                    copies[entry.name] = fallback_key
                    result.copied_for_links += 1
                    result.link_error = result.link_error or refused
                else:
                    copies.pop(entry.name, None)
                    result.linked += 1
        result.changed += write_text_if_changed(target.with_suffix(".txt"), entry.caption)
    _write_manifest(manifest, wanted, copies)
    return result
