"""The kept drawings into stage 2: read from `work_dir/synthetic/report.json`, each character's closest ones join
its composite deck up to `[synthetic] max_share` (onetwo.synth.mix). Stage 1 never reads them. Pillow only: the
composite steps import this without eval's extra."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from onetwo.data.scan import CharacterImages, SourceImage
from onetwo.project.config import Project
from onetwo.synth.mix import KeptImage, chosen, with_synthetic

REPORT = "report.json"


@dataclass(frozen=True)
class Shares:
    """One character's deck: its own images and the drawings in it; and the composites that show it."""

    name: str
    real: int
    synthetic: int
    appearances: int
    synthetic_appearances: int


def kept_images(project: Project) -> dict[str, list[KeptImage]]:
    """Every kept drawing still on disk, by character; none without a report."""
    try:
        document = json.loads((project.synthetic_dir / REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    characters = document.get("characters") if isinstance(document, dict) else None
    found: dict[str, list[KeptImage]] = {}
    for character in project.characters:
        entry = characters.get(character.name) if isinstance(characters, dict) else None
        for image in (entry or {}).get("images", []) if isinstance(entry, dict) else []:
            path = project.synthetic_dir / str(image.get("file", ""))
            if not image.get("kept") or not path.is_file():
                continue
            stat = path.stat()
            with Image.open(path) as opened:
                width, height = opened.size
            source = SourceImage(path, f"synthetic/{image['file']}", tuple(image.get("tags") or ()), True,
                                 stat.st_size, stat.st_mtime_ns, width, height, synthetic=True)
            found.setdefault(character.name, []).append(KeptImage(source, float(image.get("distance") or 0.0)))
    return found


def decks(project: Project, scans: Sequence[CharacterImages]) -> list[CharacterImages]:
    """The scans the composites deal from: each character's images, then its chosen drawings."""
    kept = kept_images(project)
    return with_synthetic(scans, kept, project.synthetic.max_share) if kept else list(scans)


def shares(project: Project, scans: Sequence[CharacterImages], jobs: Sequence) -> list[Shares]:
    """Per character with drawings in its deck: how many, and in how many of the composites that show it."""
    kept = kept_images(project)
    by_path = {}
    found = []
    for item in scans:
        name = item.character.name
        real = [image for image in item.images if not image.synthetic]
        extra = chosen(kept.get(name, ()), len(real), project.synthetic.max_share)
        if not extra:
            continue
        by_path.update({image.path: name for image in item.images})
        by_path.update({entry.image.path: name for entry in extra})
        used = [source for job in jobs for source in job.sources if by_path.get(source.path) == name]
        found.append(Shares(name, len(real), len(extra), len(used), sum(source.synthetic for source in used)))
    return found
