"""Stage 1's training folders: links to the user's images plus onetwo's captions, inside the work dir.

kohya writes latent caches and reads captions beside the images; linking keeps both away from the user's folders.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from onetwo.captions import single_caption
from onetwo.dataset import CharacterImages, SourceImage
from onetwo.fsutil import write_text_atomic, write_text_if_changed

MANIFEST_NAME = ".onetwo-files.json"


@dataclass(frozen=True)
class LinkedImage:
    name: str
    source: Path
    caption: str


def plan_folder(scan: CharacterImages, caption_template: str) -> list[LinkedImage]:
    """Flat, unique file names (subfolders joined with '__'), each with the caption onetwo writes for it."""
    name = scan.character.name
    return [LinkedImage(image.rel.replace("/", "__"), image.path, single_caption(caption_template, name, image.tags))
            for image in scan.images]


def plan_regularization(images: Sequence[SourceImage], class_tokens: str) -> list[LinkedImage]:
    """Class images keep their own tags as they are; untagged ones get the class tokens."""
    return [LinkedImage(image.rel.replace("/", "__"), image.path, ", ".join(image.tags) or class_tokens)
            for image in images]


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


def write_folder(folder: Path, entries: Sequence[LinkedImage]) -> int:
    """Make `folder` hold exactly the planned links and captions; touch nothing onetwo did not create there."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / MANIFEST_NAME
    try:
        previous = set(json.loads(manifest.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        previous = set()
    wanted = {entry.name for entry in entries} | {f"{Path(entry.name).stem}.txt" for entry in entries}
    for stale in sorted(previous - wanted):
        (folder / stale).unlink(missing_ok=True)
    changed = 0
    for entry in entries:
        target = folder / entry.name
        if not (target.is_symlink() and Path(os.readlink(target)) == entry.source):
            _link(entry.source, target)
            changed += 1
        changed += write_text_if_changed(target.with_suffix(".txt"), entry.caption)
    write_text_atomic(manifest, json.dumps(sorted(wanted), indent=0) + "\n")
    return changed
