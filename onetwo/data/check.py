"""The images' check: every image of the characters and of the regularization folders decoded once (JPEGs at
reduced scale), those that cannot be decoded left out with why, identical files named, and the per-character table
`onetwo check` prints (sizes, longest caption, kohya's buckets and crops, normalised copies).

Decoding runs in `workers.worker_count` processes and is cached by file size and mtime in the work dir, so a rerun
only looks at what changed.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from onetwo.data.captions import caption_counter, single_caption
from onetwo.data.pixels import kohya_difference
from onetwo.data.scan import CharacterImages, SourceImage, scan_regularization
from onetwo.data.workers import worker_count
from onetwo.errors import OnetwoError
from onetwo.fsutil import write_text_atomic
from onetwo.kohya.buckets import BucketSettings
from onetwo.project.config import Project

CACHE_VERSION = 3


@dataclass(frozen=True)
class ImageFacts:
    width: int = 0
    height: int = 0
    mode: str = ""
    digest: str = ""
    problem: str | None = None
    kohya_differs: str = ""  # see imaging.kohya_difference: then stage 1 trains on a normalised copy


@dataclass
class CharacterReport:
    scan: CharacterImages
    usable: list[SourceImage] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    longest_caption: tuple[int, str] = (0, "")
    tokens: str = "CLIP tokens"  # what longest_caption counts: the family's tokenizer

    @property
    def name(self) -> str:
        return self.scan.character.name


def inspect_image(path: str) -> ImageFacts:
    """Decode the image (a JPEG at 1/8 scale: enough to hit truncation) and hash its bytes."""
    try:
        data = Path(path).read_bytes()
        if not data:
            return ImageFacts(problem="empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height, mode = image.width, image.height, image.mode
                if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                    width, height = height, width
                if image.format == "JPEG":
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                image.load()
                differs = kohya_difference(image)
    except Image.DecompressionBombError:
        return ImageFacts(problem=f"larger than Pillow's decompression-bomb limit ({Image.MAX_IMAGE_PIXELS * 2:,} "
                                  "pixels); downscale it")
    except Image.UnidentifiedImageError:
        return ImageFacts(problem="not an image Pillow can read (wrong extension, or not an image at all)")
    except (OSError, SyntaxError, ValueError) as exc:
        return ImageFacts(problem=f"cannot be decoded ({exc}); re-export it")
    return ImageFacts(width, height, mode, hashlib.sha1(data).hexdigest(), kohya_differs=differs)


def _load_cache(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("images", {}) if isinstance(data, dict) and data.get("version") == CACHE_VERSION else {}


def inspect_all(images: Sequence[SourceImage], cache_file: Path, workers: int,
                progress: bool) -> dict[Path, ImageFacts]:
    cache = _load_cache(cache_file)
    facts: dict[Path, ImageFacts] = {}
    todo: list[SourceImage] = []
    for image in images:
        cached = cache.get(str(image.path))
        if cached and cached.get("fingerprint") == image.fingerprint:
            facts[image.path] = ImageFacts(**cached["facts"])
        else:
            todo.append(image)
    if todo:
        paths = [str(image.path) for image in todo]
        bar = tqdm(total=len(todo), desc="checking images", unit="img", disable=not progress)
        if workers > 1 and len(todo) > 8:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                results = pool.map(inspect_image, paths, chunksize=16)
                for image, result in zip(todo, results, strict=True):
                    facts[image.path] = result
                    bar.update(1)
        else:
            for image, path in zip(todo, paths, strict=True):
                facts[image.path] = inspect_image(path)
                bar.update(1)
        bar.close()
        # Other calls' images (the regularization folders are checked apart from the characters) stay cached.
        entries = {path: entry for path, entry in cache.items() if Path(path).exists()}
        entries.update({str(image.path): {"fingerprint": image.fingerprint, "facts": facts[image.path].__dict__}
                        for image in images})
        write_text_atomic(cache_file, json.dumps({"version": CACHE_VERSION, "images": entries}) + "\n")
    return facts


def check_images(project: Project, scans: Sequence[CharacterImages], workers: int = 0,
                 progress: bool = True) -> tuple[list[CharacterImages], list[CharacterReport], list[str]]:
    """Drop images that cannot be decoded (each reported with why); return the usable scans, reports, warnings."""
    every = [image for scan in scans for image in scan.images]
    counter = caption_counter(project)
    facts = inspect_all(every, project.work_dir / "images.check.json", worker_count(workers), progress)
    reports: list[CharacterReport] = []
    notes: list[str] = []
    first_seen: dict[str, tuple[str, Path]] = {}
    for scan in scans:
        report = CharacterReport(scan, tokens=counter.name)
        for image in scan.images:
            fact = facts[image.path]
            if fact.problem:
                report.skipped.append((str(image.path), fact.problem))
                continue
            if fact.digest in first_seen:
                owner, other = first_seen[fact.digest]
                where = "" if owner == scan.character.name else f" of character {owner!r}"
                notes.append(f"{image.path}: the same file as {other}{where}; it will be trained on twice")
            first_seen.setdefault(fact.digest, (scan.character.name, image.path))
            report.usable.append(replace(image, width=fact.width, height=fact.height,
                                         kohya_differs=fact.kohya_differs))
            report.sizes.append((fact.width, fact.height))
            caption = single_caption(project.single_caption, scan.character.name, image.tags,
                                     scan.character.class_token)
            tokens, _ = counter.count(caption)
            if tokens > report.longest_caption[0]:
                report.longest_caption = (tokens, image.rel)
        for path, why in report.skipped:
            notes.append(f"{path}: skipped, {why}")
        reports.append(report)
    usable = [replace(report.scan, images=tuple(report.usable)) for report in reports]
    return usable, reports, notes


def check_regularization(project: Project, stage: str, workers: int = 0,
                         progress: bool = True) -> tuple[CharacterImages | None, list[str]]:
    """The stage's regularization images checked like the originals: (the usable ones, or None when the stage has
    none; warnings). One that cannot be decoded is named with why and left out of the folder and the plan."""
    found = scan_regularization(project, stage)
    if found is None:
        return None, []
    (usable,), (report,), notes = check_images(project, [found], workers, progress)
    if not usable.images:
        raise OnetwoError(f"{found.character.images}: no usable regularization image for {stage}; replace them or "
                          f"remove regularization.{stage} from the project file:",
                          [f"{Path(path).name}: {why}" for path, why in report.skipped])
    return usable, notes


def bucket_summary(report: CharacterReport, buckets: BucketSettings, threshold: float) -> tuple[str, list[str]]:
    """Which kohya buckets the images land in, and those whose centre crop cuts more than `threshold`."""
    landing: Counter[tuple[int, int]] = Counter()
    cropped = []
    for image in report.usable:
        bucket = buckets.select(image.width, image.height)
        landing[bucket] += 1
        lost = buckets.cut(image.width, image.height)
        if lost > threshold:
            cropped.append(f"{image.rel} ({image.width}x{image.height} → {bucket[0]}x{bucket[1]}, {lost:.0%} cut)")
    text = ", ".join(f"{w}x{h}: {count}" for (w, h), count in sorted(landing.items()))
    return text or "-", cropped


def normalised_summary(report: CharacterReport) -> str:
    """Which images stage 1 trains on as an upright, flattened RGB copy, and why (sizes above are those upright)."""
    differing = [image for image in report.usable if image.kohya_differs]
    return f"{len(differing)} trained from an upright, flattened RGB copy" + "".join(
        f"\n{'':14}{image.rel}: {image.kohya_differs}" for image in differing)


def summary_table(report: CharacterReport, buckets: BucketSettings, threshold: float) -> str:
    scan = report.scan
    landing, cropped = bucket_summary(report, buckets, threshold)
    captioned = sum(1 for image in report.usable if image.captioned)
    areas = sorted(report.sizes, key=lambda size: size[0] * size[1])
    sizes = f"{areas[0][0]}x{areas[0][1]} .. {areas[-1][0]}x{areas[-1][1]}" if areas else "-"
    folder = scan.character.images
    link = f" (a link to {folder.resolve()})" if folder.is_symlink() else ""
    rows = [
        ("images", f"{len(scan.images)} found, {len(report.usable)} usable"),
        ("captioned", f"{captioned} ({len(report.usable) - captioned} without a caption file: "
                      f"{scan.character.token!r} alone)"),
        ("skipped", f"{len(report.skipped)}" + "".join(f"\n{'':14}{Path(p).name}: {why}" for p, why in report.skipped)),
        ("sizes", sizes),
        ("longest", f"{report.longest_caption[0]} {report.tokens} ({report.longest_caption[1] or '-'})"),
        ("repeats", str(scan.repeats)),
        ("buckets", landing),
        ("cropped", f"{len(cropped)} lose more than {threshold:.0%} to kohya's centre crop"
         + "".join(f"\n{'':14}{line}" for line in cropped)),
        ("normalised", normalised_summary(report)),
    ]
    head = f"{report.name}: {folder}{link}"
    return "\n".join([head, *(f"  {label:<11} {value}" for label, value in rows)])
