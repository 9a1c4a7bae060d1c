"""Synthetic scenes with known answers, scored by the real pipeline (the wrappers on the stand-in models, the
assignment, the seam score, the cache): every count is exact."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("numpy", reason="onetwo eval needs numpy: pip install 'onetwo[eval]'")
pytest.importorskip("onnxruntime", reason="onetwo eval needs onnxruntime: pip install 'onetwo[eval]'")
pytest.importorskip("onnx", reason="building the stand-in models needs onnx (in the dev extra)")

from onetwo.eval.backends import Backends
from onetwo.eval.cache import FeatureCache
from onetwo.eval.report import epoch_summaries
from onetwo.eval.samples import Sample
from onetwo.eval.score import Settings, reference_features, score_samples
from onetwo.eval.stats import BestEpochRule, best_epoch
from tests import evalkit

SETTINGS = Settings(threshold=evalkit.THRESHOLD, blend_margin=evalkit.THRESHOLD / 4, seam_threshold=0.03)


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Backends:
    return evalkit.stand_in_backends(tmp_path_factory.mktemp("models"))


def write_scenes(folder: Path, epoch: int, cases: list[evalkit.Case]) -> list[Sample]:
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for index, case in enumerate(cases):
        path = folder / f"e{epoch}_{index:02d}.png"
        evalkit.scene(case.figures, seam=case.seam).save(path)
        samples.append(Sample(path, epoch, index, case.prompted, None))
    return samples


def test_every_scene_gets_its_known_class_and_the_counts_are_exact(backends: Backends, tmp_path: Path) -> None:
    cases = evalkit.scene_cases()
    samples = write_scenes(tmp_path / "samples", 1, cases)
    cache = FeatureCache(tmp_path / "cache", "stand-ins")
    references = reference_features(evalkit.reference_images(tmp_path / "refs"), backends, cache)
    scored = score_samples(samples, references, backends, SETTINGS, cache)
    assert [item.verdict.label for item in scored] == [case.label for case in cases]
    assert [item.verdict.leak for item in scored] == [case.seam for case in cases]
    summary = epoch_summaries(scored)[1]
    groups = [case for case in cases if len(case.prompted) > 1]
    assert summary.group_counts == {"correct": 3, "swapped": 1, "clone": 2, "blend": 1, "missing": 1, "extra": 1,
                                    "wrong_character": 1}
    assert summary.single_counts == {"correct": 1, "wrong_character": 1, "duplicated": 1, "missing": 1}
    assert summary.groups == len(groups) and summary.leaks == 1
    rates = summary.rates()
    assert rates["pair_success"].hits == 3 and rates["pair_success"].total == 10
    assert rates["single_accuracy"].value == 0.25
    figures = scored[0].verdict.figures
    assert [figure.name for figure in figures] == ["aoi", "midori"]
    assert figures[0].box[0] < figures[1].box[0]


def test_epochs_are_summarised_apart_and_the_best_is_picked(backends: Backends, tmp_path: Path) -> None:
    cases = evalkit.scene_cases()
    good = [evalkit.Case(case.prompted, case.prompted, "correct") for case in cases if case.prompted]
    samples = write_scenes(tmp_path / "e1", 1, cases) + write_scenes(tmp_path / "e2", 2, good)
    cache = FeatureCache(tmp_path / "cache", "stand-ins")
    references = reference_features(evalkit.reference_images(tmp_path / "refs"), backends, cache)
    summaries = epoch_summaries(score_samples(samples, references, backends, SETTINGS, cache))
    assert summaries[2].rates()["pair_success"].value == 1.0
    assert summaries[2].rates()["single_accuracy"].value == 1.0
    best = best_epoch(summaries, BestEpochRule())
    assert best.epoch == 2 and best.eligible == (2,)


def test_a_rerun_scores_only_new_images(backends: Backends, tmp_path: Path) -> None:
    cases = evalkit.scene_cases()[:4]
    samples = write_scenes(tmp_path / "samples", 1, cases)
    references = evalkit.reference_images(tmp_path / "refs")
    first = FeatureCache(tmp_path / "cache", "stand-ins")
    labels = [item.verdict.label for item in score_samples(samples, reference_features(references, backends, first),
                                                            backends, SETTINGS, first)]
    first.save()
    later = write_scenes(tmp_path / "more", 2, evalkit.scene_cases()[4:6])
    again = FeatureCache(tmp_path / "cache", "stand-ins")
    assert again.file == first.file and again.file.is_file()
    vectors = reference_features(references, backends, again)
    assert again.hits == sum(len(paths) for paths in references.values())
    scored = score_samples(samples + later, vectors, backends, SETTINGS, again)
    assert again.hits == sum(len(paths) for paths in references.values()) + len(samples)  # the two new ones missed
    assert [item.verdict.label for item in scored[:4]] == labels
    expected = Counter(case.label for case in evalkit.scene_cases()[4:6])
    assert Counter(item.verdict.label for item in scored[4:]) == expected
    assert FeatureCache(tmp_path / "cache", "other models").entries == {}  # another model pair starts afresh


def test_a_transparent_reference_embeds_as_its_flattened_twin(backends: Backends, tmp_path: Path) -> None:
    """A cut-out whose transparent pixels are stored black is seen on the composites' background, as training saw
    it, not on the black under its alpha."""
    references = evalkit.reference_images(tmp_path / "refs", count=1)
    twin = references["aoi"][0]
    opaque = Image.open(twin).convert("RGB")
    cutout = Image.new("RGBA", opaque.size, (0, 0, 0, 0))
    cutout.paste(opaque, mask=evalkit.figure_mask(opaque))
    cutout.save(tmp_path / "refs" / "aoi" / "cutout.png")
    assert cutout.getpixel((0, 0)) == (0, 0, 0, 0)
    cache = FeatureCache(tmp_path / "cache", "stand-ins")
    flat = reference_features(references, backends, cache)
    cut = reference_features({**references, "aoi": [tmp_path / "refs" / "aoi" / "cutout.png"]}, backends, cache)
    np = pytest.importorskip("numpy")
    assert np.allclose(cut["aoi"], flat["aoi"], atol=1e-4)
    samples = write_scenes(tmp_path / "samples", 1, [evalkit.Case(("aoi", "midori"), ("aoi", "midori"), "correct"),
                                                    evalkit.Case(("aoi",), ("aoi",), "correct")])
    assert [item.verdict.label for item in score_samples(samples, cut, backends, SETTINGS, cache)] == ["correct"] * 2
    on_grey = reference_features({"aoi": [tmp_path / "refs" / "aoi" / "cutout.png"]}, backends, cache, (128, 128, 128))
    assert not np.allclose(on_grey["aoi"], flat["aoi"], atol=1e-4)  # flattened onto the background it is given


def test_trait_swaps_and_merged_figures_are_told_from_the_tags(tmp_path: Path) -> None:
    """aoi's body with midori's hair and ponytail: CCIP still says aoi, the tags say more midori than aoi (a trait
    swap); a half-and-half figure: no identity, tags of both (merged). Counted per epoch over the pair images."""
    from onetwo.eval.traits import distinctive_tags

    tagged = evalkit.stand_in_backends(tmp_path / "models", tags=True)
    distinctive = distinctive_tags({name: [tuple(caption.split(", "))] for name, caption in evalkit.captions().items()})
    assert distinctive["aoi"] == {"red dress", "blue hair", "hat"}
    cases = [evalkit.Case(("aoi", "midori"), (("aoi", "midori", "head"), "midori"), "correct"),
             evalkit.Case(("aoi", "midori"), ("aoi", ("aoi", "midori")), "blend"),
             evalkit.Case(("aoi", "midori"), ("aoi", "midori"), "correct"),
             evalkit.Case(("aoi",), (("aoi", "midori", "head"),), "correct")]
    samples = write_scenes(tmp_path / "samples", 1, cases)
    cache = FeatureCache(tmp_path / "cache", "stand-ins with tags")
    reference_files = evalkit.reference_images(tmp_path / "refs")
    references = reference_features(reference_files, tagged, cache)
    scored = score_samples(samples, references, tagged, SETTINGS, cache, distinctive=distinctive)
    assert [item.verdict.label for item in scored] == [case.label for case in cases]
    assert [[figure.hint for figure in item.verdict.figures] for item in scored] == [
        ["trait_swap", None], [None, "merged"], [None, None], ["trait_swap"]]
    assert scored[0].verdict.figures[0].name == "aoi" and "ponytail" in scored[0].verdict.figures[0].tags
    summary = epoch_summaries(scored)[1]
    assert summary.hints == {"trait_swap": 1, "merged": 1}  # the single's swap is not a pair's
    assert summary.rates()["trait_swap"].total == 3
    cache.save()
    again = FeatureCache(tmp_path / "cache", "stand-ins with tags")  # the tags come back from the cache
    rescored = score_samples(samples, reference_features(reference_files, tagged, again), tagged, SETTINGS, again,
                             distinctive=distinctive)
    assert again.hits == len(samples) + 6 and [item.verdict for item in rescored] == [item.verdict for item in scored]
