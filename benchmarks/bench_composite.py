"""`make bench`: onetwo's composite builder against a naive baseline and the codec floor, plus planning at scale.

Each timed run is one of: the real CLI in a subprocess (`python -m onetwo composite`), the naive baseline in this
process, or the floor in a process pool as wide as onetwo's. Runs are interleaved and repeated, and medians are
reported, because another user's jobs may share the machine; each run records how much CPU others used meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import mmap
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from PIL import Image, ImageOps, features

try:
    import numpy  # noqa: F401 -- the input generator's
    import psutil
except ImportError as missing:
    raise SystemExit(f"make bench needs numpy and psutil ({missing}): pip install numpy psutil") from None

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from inputs import CHARACTERS, ensure_inputs, ensure_planning_set  # noqa: E402

from onetwo.data import build as onetwo_build  # noqa: E402
from onetwo.data import pixels as imaging  # noqa: E402
from onetwo.data.check import check_images  # noqa: E402
from onetwo.data.composite import CompositeJob, over_budget  # noqa: E402
from onetwo.data.originals import plan_folder  # noqa: E402
from onetwo.data.scan import scan_project  # noqa: E402
from onetwo.data.workers import default_workers  # noqa: E402
from onetwo.kohya.render import load_templates, render_stage  # noqa: E402
from onetwo.project.config import Overrides, Project  # noqa: E402
from onetwo.project.file import load_project  # noqa: E402
from onetwo.stages import composite_plan, stages_of  # noqa: E402

CACHE = ROOT / ".cache" / "bench"
RESULTS = ROOT / "benchmarks" / "results"
PER_PAIR = 100  # 3 characters: 3 pairs x 100 = 300 composites
PLANNING_SIZES = (2500, 5000, 10000)
CONTENDED = 0.1  # a run is redone when other jobs used more than this many CPU-seconds per second of it
TARGETS = {"speedup_vs_baseline_min": 5.0, "time_vs_floor_max": 1.25, "peak_rss_max_mib": 1024.0,
           "planning_10000_max_s": 3.0}


@dataclass
class Run:
    seconds: float
    cpu_seconds: float  # this run's own processes
    others_cpu_seconds: float  # everything else on the machine meanwhile
    peak_rss_mib: float = 0.0  # the whole process tree, summed
    decodes: int = 0


class Meter:
    """Wall time, own CPU (this process and waited children) and the machine's busy CPU over a block."""

    def __enter__(self) -> Meter:
        self.cpu0 = self._own_cpu()
        self.busy0 = self._busy()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        self.cpu = self._own_cpu() - self.cpu0
        self.others = max(0.0, self._busy() - self.busy0 - self.cpu)

    @staticmethod
    def _own_cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    @staticmethod
    def _busy() -> float:
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    def run(self, **extra: Any) -> Run:
        return Run(self.seconds, self.cpu, self.others, **extra)


def wait_for_quiet(limit_s: float, busy_percent: float = 15.0) -> float:
    """Wait up to `limit_s` for the machine to be nearly idle (others' jobs skew timings); return the wait."""
    start = time.perf_counter()
    while psutil.cpu_percent(interval=1.0) * (os.cpu_count() or 1) > busy_percent:
        if time.perf_counter() - start > limit_s:
            break
    return time.perf_counter() - start


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a worker may exit between listing and reading
            total += member.memory_info().rss
    return total


def write_project(folder: Path, inputs: Path, image_format: str | None, per_pair: int = PER_PAIR) -> Path:
    composite: dict[str, Any] = {"per_pair": per_pair}
    if image_format:
        composite["format"] = image_format
    data = {"project": {"name": "bench", "base_model": "model.safetensors", "work_dir": "work"},
            "characters": [{"name": name, "images": str(inputs / name)} for name in CHARACTERS],
            "composite": composite}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "onetwo.toml").write_text(tomli_w.dumps(data), encoding="utf-8")
    return folder / "onetwo.toml"


def reset_outputs(project: Project, keep_check: bool) -> None:
    if not keep_check:
        shutil.rmtree(project.work_dir, ignore_errors=True)
        return
    shutil.rmtree(project.composite_dir, ignore_errors=True)
    project.manifest_file.unlink(missing_ok=True)


def run_onetwo(project: Project, workers: int | None, keep_check: bool = True) -> Run:
    """The real CLI in a subprocess; RSS of it and its workers sampled every 100 ms (each sample costs ~1 ms of CPU)."""
    reset_outputs(project, keep_check)
    argv = [sys.executable, "-m", "onetwo", "--project", str(project.file), "composite", "--no-progress"]
    argv += ["--workers", str(workers)] if workers else []
    peak = 0
    log = project.file.parent / "onetwo.log"
    with log.open("w") as stderr, Meter() as meter:
        child = subprocess.Popen(argv, cwd=ROOT, stderr=stderr)
        watched = psutil.Process(child.pid)
        while child.poll() is None:
            peak = max(peak, tree_rss(watched))
            time.sleep(0.1)
    err = log.read_text()
    if child.returncode != 0 or " built" not in err:
        raise SystemExit(f"onetwo composite failed ({child.returncode}):\n{err}")
    return meter.run(peak_rss_mib=peak / 2**20)


def plan_jobs(project: Project) -> list[CompositeJob]:
    """The jobs exactly as `onetwo composite` plans them (the image check cache is warm by now)."""
    scans, _, _ = check_images(project, scan_project(project), 1, False)
    return composite_plan(project, scans)


def cover_crop(image: Image.Image, width: int, height: int, anchor: float) -> Image.Image:
    """The naive way to the same geometry: resize the whole picture to cover the cell, then crop."""
    scale = max(width / image.width, height / image.height)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    resized = image.resize(size, Image.Resampling.LANCZOS)
    left, top = (size[0] - width) // 2, round((size[1] - height) * anchor)
    return resized.crop((left, top, left + width, top + height))


def run_baseline(jobs: Sequence[CompositeJob], out: Path) -> Run:
    """One process, full decode, convert("RGB"), LANCZOS resize, crop, paste, Pillow's default PNG save."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with Meter() as meter:
        for job in jobs:
            geo = job.geometry
            canvas = Image.new("RGB", (geo.width, geo.height), geo.background)
            for index, source in enumerate(job.sources):
                with Image.open(source.path) as opened:
                    picture = ImageOps.exif_transpose(opened).convert("RGB")
                canvas.paste(cover_crop(picture, geo.cell_width(index), geo.height, geo.vertical_anchor),
                             (geo.cell_left(index), 0))
            if geo.mirrored:
                canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            canvas.save(out / f"{job.stem}.png")
    return meter.run(decodes=2 * len(jobs))


def store_pixels(jobs: Sequence[CompositeJob], composites: Path, image_format: str, raw: Path) -> dict[str, list]:
    """onetwo's output pixels as raw RGB in one file, for the floor to encode without making them."""
    index: dict[str, list] = {}
    with raw.open("wb") as handle:
        for job in jobs:
            with Image.open(composites / f"{job.stem}.{image_format}") as image:
                data = image.convert("RGB").tobytes()
                index[job.stem] = [handle.tell(), image.width, image.height]
            handle.write(data)
    return index


_FLOOR: dict[str, Any] = {}


def _floor_init(raw: str, index: dict[str, list]) -> None:
    handle = open(raw, "rb")  # noqa: SIM115 -- kept open for the worker's life
    _FLOOR.update(map=mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ), index=index)


def _floor_batch(batch: list[tuple[list[str], Any, str, str]], cells_kept: int) -> int:
    """onetwo's worker with the resize, flatten and paste taken out: the same decodes, the same encodes."""
    cells: dict[tuple, bool] = {}
    decodes = 0
    for sources, geo, image_format, target in batch:
        for index, source in enumerate(sources):
            key = (source, geo.cell_width(index), geo.height, geo.vertical_anchor, geo.background)
            if cells.pop(key, None) is None:
                decoded = imaging.decode(Path(source), geo.cell_width(index), geo.height, geo.vertical_anchor)
                decoded.image.getpixel((0, 0))
                decodes += 1
            cells[key] = True
        while len(cells) > cells_kept:
            del cells[next(iter(cells))]
        offset, width, height = _FLOOR["index"][Path(target).stem]
        pixels = Image.frombuffer("RGB", (width, height), _FLOOR["map"][offset:offset + width * height * 3],
                                  "raw", "RGB", 0, 1)
        imaging.save_image(pixels, Path(target), image_format)
    return decodes


def run_floor(jobs: Sequence[CompositeJob], image_format: str, out: Path, raw: Path, index: dict[str, list],
              workers: int, reuse: bool) -> Run:
    """Decode as onetwo does (same order, batches, draft scale and cell reuse) and encode as onetwo does."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ordered = onetwo_build.locality_order(jobs) if reuse else list(jobs)
    tasks = [([str(source.path) for source in job.sources], job.geometry, image_format,
              str(out / f"{job.stem}.{image_format}")) for job in ordered]
    kept = onetwo_build.CELLS_KEPT if reuse else 0
    with Meter() as meter, ProcessPoolExecutor(workers, initializer=_floor_init, initargs=(str(raw), index)) as pool:
        futures = [pool.submit(_floor_batch, batch, kept) for batch in onetwo_build.batches(tasks, workers)]
        decodes = sum(future.result() for future in futures)
    return meter.run(decodes=decodes)


def profile_breakdown(jobs: Sequence[CompositeJob], image_format: str, out: Path) -> dict[str, float]:
    """Where onetwo's CPU goes: its own worker loop, in this process under cProfile, in ms per composite."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    tasks = [([str(source.path) for source in job.sources], job.geometry, image_format,
              str(out / f"{job.stem}.{image_format}")) for job in onetwo_build.locality_order(jobs)]
    profiler = cProfile.Profile(time.process_time)  # CPU time: other jobs on the machine do not count
    start = time.process_time()
    profiler.enable()
    for _ in onetwo_build._render(tasks):
        pass
    profiler.disable()
    total = time.process_time() - start
    stats: dict[tuple[str, int, str], tuple] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]

    def seconds(name: str, own_file: bool = True, inclusive: bool = True) -> float:
        return sum(row[3 if inclusive else 2] for (file, _, function), row in stats.items()
                   if function == name and (not own_file or file.endswith("pixels.py")))

    phases = {"decode": seconds("decode"), "flatten_transparency": seconds("_flattened_region"),
              "resize": seconds("<method 'resize' of 'ImagingCore' objects>", own_file=False, inclusive=False),
              "encode_and_write": seconds("save_image")}
    phases["canvas_paste_and_rest"] = total - sum(phases.values())
    return {**{f"{name}_ms": round(value / len(tasks) * 1000, 2) for name, value in phases.items()},
            "total_ms": round(total / len(tasks) * 1000, 2)}


CODECS: dict[str, dict[str, Any]] = {
    "png, Pillow's default (zlib 6)": {"format": "PNG"},
    "png, zlib 1 (onetwo before)": {"format": "PNG", "compress_level": 1},
    "png, zlib 1 + RLE (onetwo's png)": {"format": "PNG", "compress_level": 1, "compress_type": 3},
    "png, zlib 1 + Huffman only": {"format": "PNG", "compress_level": 1, "compress_type": 2},
    "webp lossless, method 0 (onetwo's webp)": {"format": "WEBP", "lossless": True, "quality": 0, "method": 0},
    "webp lossless, method 1": {"format": "WEBP", "lossless": True, "quality": 50, "method": 1},
    "webp lossless, Pillow's default (method 4)": {"format": "WEBP", "lossless": True},
    "jpeg q95 4:4:4 (lossy, for reference)": {"format": "JPEG", "quality": 95, "subsampling": 0},
    "bmp (uncompressed, for reference)": {"format": "BMP"},
}


def codec_sweep(raw: Path, index: dict[str, list], count: int = 40) -> dict[str, dict[str, float]]:
    """Encode and decode time and size of onetwo's own output pixels in each candidate format, one process."""
    with raw.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as pixels:
        images = [Image.frombytes("RGB", (width, height), pixels[offset:offset + width * height * 3])
                  for offset, width, height in list(index.values())[:count]]
    result = {}
    for name, options in CODECS.items():
        encode, decode, sizes = [], [], []
        for image in images:
            buffer = io.BytesIO()
            start = time.process_time()
            image.save(buffer, **options)
            encode.append(time.process_time() - start)
            sizes.append(buffer.tell())
            buffer.seek(0)
            start = time.process_time()
            Image.open(buffer).load()
            decode.append(time.process_time() - start)
        result[name] = {"encode_ms": round(statistics.median(encode) * 1000, 1),
                        "decode_ms": round(statistics.median(decode) * 1000, 1),
                        "kib": round(statistics.mean(sizes) / 1024)}
    return result


def folder_bytes(folder: Path, suffix: str) -> int:
    return sum(path.stat().st_size for path in folder.glob(f"*{suffix}"))


def summary(runs: Sequence[Run], count: int) -> dict[str, Any]:
    seconds = statistics.median(run.seconds for run in runs)
    return {"median_s": round(seconds, 3), "composites_per_s": round(count / seconds, 2),
            "runs_s": [round(run.seconds, 3) for run in runs],
            "cpu_s_median": round(statistics.median(run.cpu_seconds for run in runs), 2),
            "others_cpu_s": [round(run.others_cpu_seconds, 2) for run in runs],
            "peak_rss_mib": round(max(run.peak_rss_mib for run in runs), 1),
            "decodes_per_composite": round(runs[0].decodes / count, 3) if runs[0].decodes else None}


def planning(sizes: Sequence[int], reps: int, seed: int) -> dict[str, Any]:
    """scan + plan + render of big projects of tiny real files: the cost per image, not per pixel."""
    results: dict[str, Any] = {}
    for size in sizes:
        file = ensure_planning_set(CACHE, size, seed)
        project = load_project(file)
        shutil.rmtree(project.work_dir, ignore_errors=True)
        with Meter() as cold:
            check_images(project, scan_project(project), 0, False)
        phases: dict[str, list[float]] = {"scan": [], "check_cached": [], "plan": [], "render": []}
        for _ in range(reps):
            start = time.perf_counter()
            found = scan_project(project)
            scanned = time.perf_counter()
            scans, _, _ = check_images(project, found, 0, False)
            checked = time.perf_counter()
            over_budget(composite_plan(project, scans))
            planned = time.perf_counter()
            for stage in stages_of(project):
                weights = project.lora_file("stage1") if stage == "stage2" else None
                render_stage(project, stage, scans, load_templates(project, stage), Overrides(), weights)
            for item in scans:
                plan_folder(item, project.single_caption)
            rendered = time.perf_counter()
            for name, value in zip(phases, (scanned - start, checked - scanned, planned - checked,
                                            rendered - planned), strict=True):
                value_list = phases[name]
                value_list.append(value)
        medians = {name: round(statistics.median(values), 3) for name, values in phases.items()}
        total = round(sum(medians.values()), 3)
        results[str(size)] = {**medians, "total_s": total, "us_per_image": round(total / size * 1e6, 1),
                              "first_check_decoding_s": round(cold.seconds, 2)}
    return results


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": model, "cores": os.cpu_count(), "usable_cores": default_workers(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version(),
            "pillow": Image.__version__, "libjpeg_turbo": features.version("libjpeg_turbo"),
            "zlib": features.version("zlib"), "zlib_ng": features.version("zlib_ng"),
            "libwebp": features.version("webp"), "platform": platform.platform(), "loadavg_start": os.getloadavg()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every timed run (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="input set seed (cached under .cache/bench)")
    parser.add_argument("--workers", type=int, default=0, help="onetwo's and the floor's workers (default: cores)")
    parser.add_argument("--formats", default="png,webp", help="output formats to time (the first is compared)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the slow naive baseline")
    parser.add_argument("--no-profile", action="store_true", help="skip the single-process CPU profile")
    parser.add_argument("--no-codecs", action="store_true", help="skip the output format comparison")
    parser.add_argument("--no-planning", action="store_true", help="skip the 10,000-image planning part")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="seconds to wait, before each run, for other jobs to leave the CPU (default 60)")
    parser.add_argument("--retries", type=int, default=2,
                        help="times to redo a run during which other jobs took the CPU (default 2)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results JSON")
    args = parser.parse_args(argv)
    workers = args.workers or default_workers()
    formats = args.formats.split(",")
    report: dict[str, Any] = {"machine": machine(), "workers": workers, "reps": args.reps, "targets": TARGETS}

    started = time.perf_counter()
    inputs = ensure_inputs(CACHE, args.seed)
    print(f"inputs: {inputs} (made or reused in {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    work = CACHE / f"run-{args.seed}"
    projects = {fmt: load_project(write_project(work / fmt, inputs, fmt)) for fmt in formats}
    for project in projects.values():
        run_onetwo(project, args.workers or None)  # untimed: fills the image-check cache and the page cache
    jobs = plan_jobs(projects[formats[0]])
    first = projects[formats[0]]
    index = store_pixels(jobs, first.composite_dir, formats[0], work / "pixels.raw")
    size = jobs[0].geometry.width, jobs[0].geometry.height
    report["set"] = {"composites": len(jobs), "composite_size": size, "sources": 3 * 60,
                     "source_bytes": sum(path.stat().st_size for path in inputs.glob("*/*.*")
                                         if path.suffix != ".txt")}

    runs: dict[str, list[Run]] = {}
    timed: dict[str, Callable[[], Run]] = {}
    for fmt, project in projects.items():
        timed[f"onetwo_{fmt}"] = lambda project=project: run_onetwo(project, args.workers or None)
        timed[f"floor_{fmt}"] = lambda fmt=fmt: run_floor(jobs, fmt, work / "floor", work / "pixels.raw", index,
                                                          workers, reuse=True)
    timed[f"onetwo_{formats[0]}_fresh_work_dir"] = lambda: run_onetwo(first, args.workers or None, keep_check=False)
    timed[f"floor_{formats[0]}_without_reuse"] = lambda: run_floor(jobs, formats[0], work / "floor",
                                                                   work / "pixels.raw", index, workers, reuse=False)
    if not args.no_baseline:
        timed["baseline"] = lambda: run_baseline(jobs, work / "baseline")
    discarded: dict[str, list[float]] = {}
    for rep in range(args.reps):
        for name, action in timed.items():
            for attempt in range(args.retries + 1):
                wait_for_quiet(args.quiet_wait)
                result = action()
                print(f"rep {rep + 1}/{args.reps} {name}: {result.seconds:.2f} s, {len(jobs) / result.seconds:.2f}/s, "
                      f"others used {result.others_cpu_seconds:.1f} CPU-s", file=sys.stderr)
                if result.others_cpu_seconds <= CONTENDED * result.seconds or attempt == args.retries:
                    break
                discarded.setdefault(name, []).append(round(result.seconds, 3))
            runs.setdefault(name, []).append(result)
    report["discarded_contended_runs_s"] = discarded
    report["runs"] = {name: summary(values, len(jobs)) for name, values in runs.items()}
    for fmt, project in projects.items():
        report["runs"][f"onetwo_{fmt}"]["output_mib"] = round(folder_bytes(project.composite_dir, f".{fmt}") / 2**20, 1)
    if "baseline" in runs:
        report["runs"]["baseline"]["output_mib"] = round(folder_bytes(work / "baseline", ".png") / 2**20, 1)

    report["ratios"] = ratios(report["runs"], formats)
    if not args.no_profile:
        wait_for_quiet(args.quiet_wait)
        report["profile_one_process"] = {fmt: profile_breakdown(jobs, fmt, work / "profile") for fmt in formats}
    if not args.no_codecs:
        wait_for_quiet(args.quiet_wait)
        report["codecs_one_process"] = codec_sweep(work / "pixels.raw", index)
    if not args.no_planning:
        wait_for_quiet(args.quiet_wait)
        report["planning"] = planning(PLANNING_SIZES, args.reps, args.seed)
    report["targets_met"] = targets_met(report, formats[0])
    shutil.rmtree(work, ignore_errors=True)  # ~1.5 GB of outputs and raw pixels; the inputs stay cached
    report["machine"]["loadavg_end"] = os.getloadavg()

    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"composite-{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print_table(report)
    print(f"\nresults: {target}")
    return 0


def ratios(runs: dict[str, dict[str, Any]], formats: Sequence[str]) -> dict[str, Any]:
    """Per format: speed-up over the baseline and time over the floor, each the median of the ratios of runs made
    one after the other in the same repetition, since this machine's speed drifts over minutes; also the CPU time
    over the floor's, which others' jobs skew less."""

    def paired(numerator: str, denominator: str) -> float:
        return statistics.median(a / b for a, b in zip(runs[numerator]["runs_s"], runs[denominator]["runs_s"],
                                                       strict=True))

    result: dict[str, Any] = {}
    for fmt in formats:
        if "baseline" in runs:
            result[f"{fmt}_speedup_vs_baseline"] = round(paired("baseline", f"onetwo_{fmt}"), 2)
        result[f"{fmt}_time_vs_floor"] = round(paired(f"onetwo_{fmt}", f"floor_{fmt}"), 3)
        result[f"{fmt}_cpu_vs_floor"] = round(runs[f"onetwo_{fmt}"]["cpu_s_median"]
                                              / runs[f"floor_{fmt}"]["cpu_s_median"], 3)
    return result


def targets_met(report: dict[str, Any], fmt: str) -> dict[str, bool | None]:
    speedup = report["ratios"].get(f"{fmt}_speedup_vs_baseline")
    planned = report.get("planning", {}).get("10000", {}).get("total_s")
    return {"speedup_vs_baseline": None if speedup is None else speedup >= TARGETS["speedup_vs_baseline_min"],
            "time_vs_floor": report["ratios"][f"{fmt}_time_vs_floor"] <= TARGETS["time_vs_floor_max"],
            "peak_rss": report["runs"][f"onetwo_{fmt}"]["peak_rss_mib"] <= TARGETS["peak_rss_max_mib"],
            "planning_10000": None if planned is None else planned <= TARGETS["planning_10000_max_s"]}


def print_table(report: dict[str, Any]) -> None:
    count = report["set"]["composites"]
    print(f"\n{count} composites of {report['set']['composite_size']} from {report['set']['sources']} sources, "
          f"{report['workers']} workers for onetwo and the floor, 1 process for the baseline, medians of "
          f"{report['reps']} runs, peak RSS the highest of them")
    print(f"{'run':34} {'s':>7} {'comp/s':>7} {'decodes/comp':>12} {'peak RSS MiB':>12} {'output MiB':>10}")
    for name, row in report["runs"].items():
        print(f"{name:34} {row['median_s']:7.2f} {row['composites_per_s']:7.2f} "
              f"{row['decodes_per_composite'] or '-':>12} {row['peak_rss_mib'] or '-':>12} "
              f"{row.get('output_mib', '-'):>10}")
    print("ratios: " + ", ".join(f"{key} {value}" for key, value in report["ratios"].items()))
    print("targets met: " + ", ".join(f"{key} {value}" for key, value in report["targets_met"].items()))
    for fmt, row in report.get("profile_one_process", {}).items():
        print(f"profile {fmt}, one process, ms per composite: " + ", ".join(f"{k[:-3]} {v}" for k, v in row.items()))
    for name, row in report.get("codecs_one_process", {}).items():
        print(f"{name:44} encode {row['encode_ms']:6.1f} ms, decode {row['decode_ms']:5.1f} ms, {row['kib']:5} KiB")
    for size, row in report.get("planning", {}).items():
        print(f"planning {size:>6} images: " + ", ".join(f"{key} {value}" for key, value in row.items()))


if __name__ == "__main__":
    sys.exit(main())
