"""`make bench`: scene composites (masks cached) against side-by-side ones, built the same way, and figure-mask
computation with the stand-in segmentation model (tests/maskkit.py), images/s.

Both layouts go through the real planner and builder (`stages.composite_plan`, `build.build`, one worker so the
comparison is per core) on the same synthetic textured characters; runs are interleaved and repeated, medians
reported. The stand-in model stands for the real ISNet's interface, not its cost: the real model's own inference
comes on top and was not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    import numpy as np
    import onnx  # noqa: F401
    import onnxruntime
except ImportError as missing:
    raise SystemExit(f"bench_masks needs numpy, onnx and onnxruntime ({missing}): pip install -e '.[dev]'") from None

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import tomli_w  # noqa: E402
from PIL import Image  # noqa: E402

from onetwo.data.build import build  # noqa: E402
from onetwo.data.masks import figure_masks  # noqa: E402
from onetwo.data.scan import scan_project  # noqa: E402
from onetwo.data.segment import IsnetSegmenter  # noqa: E402
from onetwo.project.file import load_project  # noqa: E402
from onetwo.stages import composite_plan, project_masks  # noqa: E402
from tests.maskkit import draw_character, write_isnet  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
NAMES = ("aoi", "beni", "kiiro")
TARGET = 0.8  # scenes must reach this share of the side-by-side throughput


def textured(path: Path, character: int, index: int, size: tuple[int, int], cut_out: bool) -> None:
    """A figure of maskkit's shape with noise on it, so encoding costs what a drawing costs."""
    draw_character(path, character, index, size, cut_out)
    with Image.open(path) as image:
        pixels = np.asarray(image).astype(np.int16)
    rng = np.random.default_rng(character * 100 + index)
    noise = rng.integers(-12, 13, size=(*pixels.shape[:2], 3))
    pixels[..., :3] = np.clip(pixels[..., :3] + noise, 0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(path, compress_level=1)


def make_project(root: Path, images: int, per_pair: int, layout: str, cut_out: bool) -> Path:
    for character, name in enumerate(NAMES):
        for index in range(images):
            path = root / "data" / name / f"{index}.png"
            if not path.exists():
                textured(path, character, index, (640, 960), cut_out)
                path.with_suffix(".txt").write_text("1girl, smile", encoding="utf-8")
    data = {"project": {"name": "bench", "base_model": "model.safetensors", "work_dir": f"work-{layout}",
                        "output_dir": "out"},
            "characters": [{"name": name, "images": f"data/{name}"} for name in NAMES],
            "composite": {"per_pair": per_pair, "workers": 1, "width": 768, "height": 768, "layout": layout}}
    file = root / f"{layout}.toml"
    file.write_text(tomli_w.dumps(data), encoding="utf-8")
    return file


def build_once(file: Path) -> float:
    project = load_project(file)
    scans = scan_project(project)
    jobs = composite_plan(project, scans, progress=False)  # scenes: the masks are cached before timing
    shutil.rmtree(project.composite_dir, ignore_errors=True)
    project.manifest_file.unlink(missing_ok=True)
    start = time.perf_counter()
    report = build(jobs, "png", project.composite_dir, project.manifest_file, workers=1, progress=False)
    elapsed = time.perf_counter() - start
    assert report.built == len(jobs) and not report.failed
    return len(jobs) / elapsed


def with_sizes(file: Path):
    """The scans with their pixel sizes, as `check` leaves them (the planner's natural layout needs none)."""
    project = load_project(file)
    return project, scan_project(project)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=8, help="images per character (default 8)")
    parser.add_argument("--per-pair", type=int, default=20, help="composites per pair (default 20: 60 in all)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="onetwo-bench-masks-") as tmp:
        root = Path(tmp)
        side = make_project(root / "cutouts", args.images, args.per_pair, "equal", cut_out=True)
        scene = make_project(root / "cutouts", args.images, args.per_pair, "scene", cut_out=True)
        project, scans = with_sizes(scene)
        project_masks(project, scans, progress=False)  # alpha masks, cached once
        rates: dict[str, list[float]] = {"side by side": [], "scene": []}
        for _ in range(args.repeat):
            rates["side by side"].append(build_once(side))
            rates["scene"].append(build_once(scene))

        opaque = make_project(root / "opaque", args.images, args.per_pair, "scene", cut_out=False)
        model = IsnetSegmenter(write_isnet(root / "model"), "stand-in isnetis")
        project, scans = with_sizes(opaque)
        sources = [image for item in scans for image in item.images]
        mask_rates = []
        for run in range(args.repeat):
            start = time.perf_counter()
            figure_masks(sources, root / f"masks-{run}", lambda: model, progress=False)
            mask_rates.append(len(sources) / (time.perf_counter() - start))
    side_rate, scene_rate = (statistics.median(rates[key]) for key in ("side by side", "scene"))
    ratio = scene_rate / side_rate
    result = {
        "composites": 3 * args.per_pair, "size": [768, 768], "sources": [640, 960], "repeat": args.repeat,
        "side_by_side_per_s": round(side_rate, 2), "scene_per_s": round(scene_rate, 2), "ratio": round(ratio, 3),
        "target_ratio": TARGET, "masks_per_s": round(statistics.median(mask_rates), 2),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "onnxruntime": onnxruntime.__version__},
        "model": "stand-in (tests/maskkit.py): the real ISNet's inference at 1024 px comes on top",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "masks.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"composites, 768x768 from 640x960 sources, one worker, median of {args.repeat}:")
    print(f"  side by side  {side_rate:6.2f} composites/s")
    print(f"  scene         {scene_rate:6.2f} composites/s ({ratio:.2f}x; target {TARGET}x: "
          f"{'met' if ratio >= TARGET else 'NOT met'})")
    print(f"figure masks with the stand-in model: {result['masks_per_s']} images/s → {RESULTS / 'masks.json'}")


if __name__ == "__main__":
    main()
