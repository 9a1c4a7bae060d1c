"""Turn a composite plan into files: parallel, resumable, atomic, with a manifest of what was made from what."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from onetwo.data.composite import CompositeJob, Geometry
from onetwo.data.workers import worker_count
from onetwo.fsutil import write_text_atomic, write_text_if_changed

if TYPE_CHECKING:
    from PIL import Image

    from onetwo.data.pixels import Box, CellKey

MANIFEST_VERSION = 1
MANIFEST_SAVE_SECONDS = 2.0


@dataclass
class BuildReport:
    built: int = 0
    skipped: int = 0
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)


def load_manifest(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # an unreadable manifest only costs a rebuild
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        return {}
    entries = data.get("composites", {})
    return entries if isinstance(entries, dict) else {}


def save_manifest(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    payload = {"version": MANIFEST_VERSION, "composites": dict(sorted(entries.items()))}
    write_text_atomic(path, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")


def image_name(job: CompositeJob, image_format: str) -> str:
    return f"{job.stem}.{image_format}"


Task = tuple[list[str], Geometry, str, str]
Result = tuple[str, list[list[float]] | None, str | None]
CELLS_KEPT = 4  # resized cells a worker keeps: consecutive composites share one source, so few are enough
BATCH_MAX = 16  # composites a worker takes at once: fewer cells decoded twice at batch edges vs a short tail


def _render(tasks: Iterable[Task]) -> Iterator[Result]:
    # Imported here so that a worker process pays for Pillow only when it has work.
    from onetwo.data.pixels import compose, compose_scene, loss_weight, save_image, with_alpha

    cells: dict[CellKey, tuple[Image.Image, Box]] = {}
    loaded: dict[str, tuple[Image.Image, Image.Image]] = {}  # scenes' whole sources and masks
    for sources, geo, image_format, target in tasks:
        try:
            union = None
            if geo.figures:
                image, union = compose_scene([Path(source) for source in sources], geo, geo.loss_mask == "figures",
                                             loaded)
                boxes: list[Box] = [figure.crop for figure in geo.figures]
            else:
                image, boxes = compose([Path(source) for source in sources], geo, cells)
            save_image(with_alpha(image, loss_weight(geo, boxes, union)), Path(target), image_format)
        except Exception as exc:  # reported per composite; the rest of the build goes on
            yield target, None, f"{type(exc).__name__}: {exc}"
        else:
            yield target, [[round(value, 2) for value in box] for box in boxes], None
        while len(cells) > CELLS_KEPT:
            del cells[next(iter(cells))]
        while len(loaded) > CELLS_KEPT:
            del loaded[next(iter(loaded))]


def _render_batch(batch: list[Task]) -> list[Result]:
    return list(_render(batch))


def locality_order(jobs: Sequence[CompositeJob]) -> list[CompositeJob]:
    """The jobs as walks in which each composite shares a source with the one before wherever the plan allows.

    A source then costs about one decode per run of composites that use it instead of one per composite: a
    character's images are each used in 2 x per_pair / images composites on average.
    """
    users: dict[Path, list[int]] = defaultdict(list)
    for index in reversed(range(len(jobs))):
        for path in dict.fromkeys(source.path for source in jobs[index].sources):
            users[path].append(index)
    done = [False] * len(jobs)
    order: list[CompositeJob] = []
    recent: list[Path] = []  # the sources whose cells a worker still holds, newest last
    for start in range(len(jobs)):
        current: int | None = start
        while current is not None and not done[current]:
            done[current] = True
            order.append(jobs[current])
            paths = [source.path for source in jobs[current].sources]
            recent = ([path for path in recent if path not in paths] + paths)[-CELLS_KEPT:]
            current = None
            for path in reversed(recent):
                waiting = users[path]
                while waiting and done[waiting[-1]]:
                    waiting.pop()
                if waiting:
                    current = waiting[-1]
                    break
    return order


def batches(tasks: Sequence[Task], workers: int) -> Iterator[list[Task]]:
    """Consecutive slices, shrinking towards the end so that no worker is left with a long last batch."""
    start = 0
    while start < len(tasks):
        size = max(1, min(BATCH_MAX, (len(tasks) - start) // (workers * 4)))
        yield list(tasks[start:start + size])
        start += size


def _run_tasks(tasks: Sequence[Task], workers: int) -> Iterator[Result]:
    workers = min(workers, len(tasks))
    if workers <= 1:
        yield from _render(tasks)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: set[Future[list[Result]]] = set()
        for batch in batches(tasks, workers):
            if len(pending) >= 2 * workers:  # a bounded queue: memory does not grow with the number of composites
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield from future.result()
            pending.add(pool.submit(_render_batch, batch))
        for future in as_completed(pending):
            yield from future.result()


def _remove_entry(out_dir: Path, entry: dict[str, Any]) -> None:
    for name in (entry.get("file"), entry.get("caption_file")):
        if isinstance(name, str) and "/" not in name and name not in ("", ".", ".."):
            (out_dir / name).unlink(missing_ok=True)


def build(jobs: Sequence[CompositeJob], image_format: str, out_dir: Path, manifest_path: Path,
          workers: int = 0, progress: bool = True) -> BuildReport:
    """Build what the plan asks for; skip composites whose inputs have not changed; remove only our own leftovers."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = BuildReport()
    entries = load_manifest(manifest_path)
    planned = {job.stem: job for job in jobs}
    for stem in sorted(set(entries) - set(planned)):
        _remove_entry(out_dir, entries.pop(stem))
        report.removed.append(stem)
    if report.removed:
        save_manifest(manifest_path, entries)

    todo: list[CompositeJob] = []
    for job in jobs:
        caption_file = f"{job.stem}.txt"
        write_text_if_changed(out_dir / caption_file, job.caption)
        old = entries.get(job.stem)
        name = image_name(job, image_format)
        if old and old.get("key") == job.key and old.get("file") == name and (out_dir / name).is_file():
            old["caption"] = job.caption
            report.skipped += 1
        else:
            todo.append(job)

    known = {name for entry in entries.values() for name in (entry.get("file"), entry.get("caption_file"))}
    known |= {image_name(job, image_format) for job in jobs} | {f"{job.stem}.txt" for job in jobs}
    report.foreign = sorted(path.name for path in out_dir.iterdir() if path.name not in known
                            and not path.name.startswith("."))

    tasks = [([str(source.path) for source in job.sources], job.geometry, image_format,
              str(out_dir / image_name(job, image_format))) for job in locality_order(todo)]
    by_target = {str(out_dir / image_name(job, image_format)): job for job in todo}
    last_save = time.monotonic()
    workers = worker_count(workers)
    bar = tqdm(total=len(tasks), desc="composites", unit="img", disable=not progress or not tasks)
    for target, boxes, error in _run_tasks(tasks, workers):
        job = by_target[target]
        bar.update(1)
        if error:
            report.failed.append(f"{job.stem} ({', '.join(str(source.path) for source in job.sources)}): {error}")
            continue
        old = entries.get(job.stem)
        if old and old.get("file") != image_name(job, image_format):
            _remove_entry(out_dir, {"file": old.get("file")})
        entries[job.stem] = manifest_entry(job, image_format, boxes or [])
        report.built += 1
        if time.monotonic() - last_save > MANIFEST_SAVE_SECONDS:
            save_manifest(manifest_path, entries)
            last_save = time.monotonic()
    bar.close()
    save_manifest(manifest_path, entries)
    return report


def manifest_entry(job: CompositeJob, image_format: str, boxes: Iterable[list[float]]) -> dict[str, Any]:
    return {
        "key": job.key,
        "file": image_name(job, image_format),
        "caption_file": f"{job.stem}.txt",
        "caption": job.caption,
        "names": list(job.names),
        "sources": [str(source.path) for source in job.sources],
        "crops": list(boxes),
        "size": [job.geometry.width, job.geometry.height],
        "mirrored": job.geometry.mirrored,
        **({"loss_mask": job.geometry.loss_mask, "mask_floor": job.geometry.mask_floor}
           if job.geometry.loss_mask != "none" else {}),
        **({"layout": "scene", "figures": scene_figures(job.geometry)} if job.geometry.figures else {}),
        # which sources `onetwo synth` drew (stage 1's own drawings, kept by eval), in the order of "sources"
        **({"synthetic": [source.synthetic for source in job.sources]}
           if any(source.synthetic for source in job.sources) else {}),
    }


def scene_figures(geo: Geometry) -> list[dict[str, Any]]:
    """Each figure in caption order: its box in the composite as built (mirrored ones flipped, so the order is
    the caption's again), its scale and the crop of its source."""
    figures = [{"box": [geo.width - figure.left - figure.width, figure.top, geo.width - figure.left, figure.top +
                        figure.height] if geo.mirrored else
                       [figure.left, figure.top, figure.left + figure.width, figure.top + figure.height],
                "scale": round(figure.scale, 4), "crop": list(figure.crop), "mask": figure.mask}
               for figure in geo.figures]
    for layer, index in enumerate(geo.front):
        figures[index]["layer"] = layer  # 0 is drawn first, at the back
    return figures[::-1] if geo.mirrored else figures
