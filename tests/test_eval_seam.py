"""The seam score: composite leaks against the things that look like one (poles, outlines, gradients)."""

from __future__ import annotations

import pytest

pytest.importorskip("numpy", reason="onetwo eval needs numpy: pip install 'onetwo[eval]'")

from PIL import Image

from onetwo.eval import seam_score
from onetwo.eval.seam import DEFAULT_THRESHOLD, calibrate, roc_auc
from tests import evalkit


def test_seam_score_separates_seams_from_poles_outlines_and_gradients() -> None:
    positives, negatives = evalkit.seam_set(count=40, seed=0)
    auc = roc_auc([seam_score(image) for image in positives], [seam_score(image) for image in negatives])
    assert auc >= 0.95


def test_each_kind_of_negative_scores_below_a_plain_seam() -> None:
    positives, negatives = evalkit.seam_set(count=6, seed=1)
    sharp = [seam_score(image) for index, image in enumerate(positives) if index % 2 == 0]
    for image in negatives:  # kinds cycle: pole, outline, gradient
        assert seam_score(image) < min(sharp)


def test_flat_and_scene_images_score_zero_and_a_two_panel_scene_does_not() -> None:
    assert seam_score(Image.new("RGB", (300, 200), (90, 120, 200))) < 1e-6
    assert seam_score(evalkit.scene(["aoi", "midori"])) < 1e-6
    assert seam_score(evalkit.scene(["aoi", "midori"], seam=True)) > 0.05


def test_calibration_cuts_between_the_two_sets() -> None:
    calibration = calibrate([0.3, 0.4, 0.5], [0.01, 0.02, 0.1], "test")
    assert 0.1 < calibration.threshold < 0.3 and calibration.auc == 1.0
    assert calibrate([], [0.1], "test").auc is None


def test_a_calibration_that_separates_nothing_falls_back_to_the_default() -> None:
    calibration = calibrate([0.0, 0.0, 0.0], [0.0, 0.0], "plain composites")
    assert calibration.threshold == DEFAULT_THRESHOLD and calibration.auc == 0.5
    assert "do not separate" in calibration.source


def test_a_fallback_calibration_names_its_auc_once() -> None:
    from onetwo.eval.seam import calibrate

    calibration = calibrate([0.1, 0.2, 0.3], [0.1, 0.2, 0.3], "3 composites vs 3 originals")
    assert calibration.auc == 0.5
    assert f"{calibration.auc:.2f}" not in calibration.source  # eval prints the AUC beside the source, once
