"""`make bench` (second part): images scored per second by `onetwo eval`'s real code path (onnxruntime wrappers,
assignment, seam score, cache) on the CPU, with the tiny stand-in models the tests build.

The stand-ins cost almost nothing to run, so this measures onetwo's own overhead (decoding, resizing, batching,
post-processing, the seam score, the tagger's padding) — the floor under any model. The real detector, CCIP and
tagger add their own inference time on top; the report says so beside the projection for 40 epochs x 9 prompts x
4 seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    import numpy  # noqa: F401
    import onnx  # noqa: F401
    import onnxruntime
except ImportError as missing:
    raise SystemExit(f"the eval benchmark needs numpy, onnx and onnxruntime ({missing}): pip install -e '.[dev]'") \
        from None

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from onetwo.eval.backends import Backends  # noqa: E402
from onetwo.eval.cache import FeatureCache  # noqa: E402
from onetwo.eval.onnx_models import CcipEmbedder, WdTagger, YoloPersonDetector  # noqa: E402
from onetwo.eval.samples import Sample  # noqa: E402
from onetwo.eval.score import Settings, load_rgb, reference_features, score_samples  # noqa: E402
from onetwo.eval.seam import seam_score  # noqa: E402
from onetwo.eval.traits import distinctive_tags  # noqa: E402
from tests import evalkit  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PLANNED = 40 * 9 * 4  # epochs x prompts (3 characters: 3 singles + 6 ordered pairs) x seeds
DISTINCTIVE = distinctive_tags({name: [tuple(caption.split(", "))] for name, caption in evalkit.captions().items()})


def make_samples(folder: Path, count: int, size: int) -> list[Sample]:
    cases = evalkit.scene_cases()
    samples = []
    for index in range(count):
        case = cases[index % len(cases)]
        path = folder / f"sample_{index:04d}.png"
        evalkit.scene(case.figures, seam=case.seam, size=size).save(path, compress_level=1)
        samples.append(Sample(path, index // 9, index % 9, case.prompted, None))
    return samples


def run_once(samples: list[Sample], references: dict, backends: Backends, cache_dir: Path) -> tuple[float, float]:
    """(cold seconds, warm seconds): a first run fills the cache, a second reads it back."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    settings = Settings(evalkit.THRESHOLD, evalkit.THRESHOLD / 4, 0.03)
    start = time.perf_counter()
    cache = FeatureCache(cache_dir, "bench")
    vectors = reference_features(references, backends, cache)
    score_samples(samples, vectors, backends, settings, cache, distinctive=DISTINCTIVE)
    cache.save()
    cold = time.perf_counter() - start
    start = time.perf_counter()
    cache = FeatureCache(cache_dir, "bench")
    score_samples(samples, reference_features(references, backends, cache), backends, settings, cache,
                  distinctive=DISTINCTIVE)
    return cold, time.perf_counter() - start


def stage_times(samples: list[Sample], backends: Backends) -> dict[str, float]:
    """Seconds per image of each part, alone, on the first 32 samples."""
    images = [load_rgb(sample.path) for sample in samples[:32]]
    parts: dict[str, float] = {}
    start = time.perf_counter()
    [load_rgb(sample.path) for sample in samples[:32]]
    parts["decode"] = (time.perf_counter() - start) / len(images)
    start = time.perf_counter()
    boxes = backends.detector.detect(images)
    parts["detect (resize + onnx + nms)"] = (time.perf_counter() - start) / len(images)
    from onetwo.eval.backends import crop

    crops = [crop(image, box) for image, found in zip(images, boxes, strict=True) for box in found]
    start = time.perf_counter()
    backends.embedder.embed(crops)
    parts["embed (all crops of an image)"] = (time.perf_counter() - start) / len(images)
    if backends.tagger:
        start = time.perf_counter()
        backends.tagger.tag(crops)
        parts["tag (all crops of an image)"] = (time.perf_counter() - start) / len(images)
    start = time.perf_counter()
    [seam_score(image) for image in images]
    parts["seam score"] = (time.perf_counter() - start) / len(images)
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=144, help="sample images to score (default 144: 16 epochs x 9)")
    parser.add_argument("--size", type=int, default=768, help="sample size in pixels (default 768, stage 2's)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="onetwo-bench-eval-") as tmp:
        root = Path(tmp)
        files = evalkit.write_models(root / "models")
        backends = Backends(YoloPersonDetector(files["model"], "stand-in"),
                            CcipEmbedder(files["features"], files["metrics"], files["threshold"], "stand-in"),
                            WdTagger(files["tagger"], files["tags"], "stand-in"))
        (root / "samples").mkdir()
        samples = make_samples(root / "samples", args.images, args.size)
        references = evalkit.reference_images(root / "refs", count=4)
        runs = [run_once(samples, references, backends, root / "cache") for _ in range(args.repeat)]
        parts = stage_times(samples, backends)
    cold = statistics.median(run[0] for run in runs)
    warm = statistics.median(run[1] for run in runs)
    rate = args.images / cold
    result = {
        "images": args.images, "size": args.size, "repeat": args.repeat, "cold_s": round(cold, 2),
        "warm_s": round(warm, 3), "images_per_s": round(rate, 2), "cached_images_per_s": round(args.images / warm, 1),
        "per_image_s": {name: round(value, 4) for name, value in parts.items()},
        "projection_40x9x4": {"images": PLANNED, "seconds": round(PLANNED / rate, 1)},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "onnxruntime": onnxruntime.__version__, "processor": platform.processor() or platform.machine()},
        "models": "stand-ins (tests/evalkit.py): the real detector, CCIP and tagger add their own inference time",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "eval.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"onetwo eval, stand-in models, {args.images} images of {args.size} px, median of {args.repeat}:")
    print(f"  first run   {cold:7.2f} s  {rate:6.2f} images/s")
    print(f"  cached rerun{warm:7.3f} s  {args.images / warm:6.1f} images/s")
    for name, value in parts.items():
        print(f"  {name:<32} {value * 1000:7.1f} ms/image")
    print(f"  40 epochs x 9 prompts x 4 seeds = {PLANNED} images: {PLANNED / rate:.0f} s of onetwo's own work, plus "
          "the real models' inference")
    print(f"  peak RSS {result['peak_rss_mib']} MiB → {RESULTS / 'eval.json'}")


if __name__ == "__main__":
    main()
