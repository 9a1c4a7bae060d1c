"""The eval cache keeps an image embedded whole as a reference apart from the same file scored as a sample (its
figures detected, its seam scored), in one run and across runs."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("numpy", reason="onetwo eval needs numpy: pip install 'onetwo[eval]'")
pytest.importorskip("onnxruntime", reason="onetwo eval needs onnxruntime: pip install 'onetwo[eval]'")
pytest.importorskip("onnx", reason="building the stand-in models needs onnx (in the dev extra)")

from onetwo.eval.backends import Backends
from onetwo.eval.cache import FeatureCache
from onetwo.eval.samples import Sample
from onetwo.eval.score import Settings, reference_features, score_samples
from tests import evalkit

SETTINGS = Settings(threshold=evalkit.THRESHOLD, blend_margin=evalkit.THRESHOLD / 4, seam_threshold=0.03)


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Backends:
    return evalkit.stand_in_backends(tmp_path_factory.mktemp("models"))


def test_a_reference_scored_as_a_sample_gets_its_figures_and_seam(backends: Backends, tmp_path: Path) -> None:
    references = evalkit.reference_images(tmp_path / "refs")
    both = tmp_path / "refs" / "pair-with-seam.png"
    evalkit.scene(["aoi", "midori"], seam=True).save(both)
    references["aoi"] = [*references["aoi"], both]  # also a reference: embedded whole, one box, no seam
    sample = Sample(both, 1, 0, ("aoi", "midori"), None)
    for run in range(2):  # the second run reads everything from the cache file the first one saved
        cache = FeatureCache(tmp_path / "cache", "stand-ins")
        vectors = reference_features(references, backends, cache)
        assert len(vectors["aoi"]) == len(references["aoi"])
        (scored,) = score_samples([sample], vectors, backends, SETTINGS, cache)
        assert len(scored.verdict.figures) == 2, run
        assert scored.verdict.leak and scored.verdict.seam > SETTINGS.seam_threshold, run
        assert cache.hits == (0 if run == 0 else sum(len(paths) for paths in references.values()) + 1)
        cache.save()
