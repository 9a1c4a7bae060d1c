"""The composite-leak score: does the picture split along one near-vertical line, as two pasted panels do?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

WORK_WIDTH = 256  # the score is computed at this width: fast, and blind to fine texture
BAND = (0.25, 0.75)  # where a seam may sit, as shares of the width
WINDOW = 8  # pixels averaged on each side of the line
GAP = 3  # pixels skipped on each side of the line: a blurred seam or a thin pole fits inside
DRIFT = 2  # the line may wander this many pixels between rows (near-vertical, not exactly vertical)
ROW_SHARE = 0.8  # a seam crosses at least this share of the rows


def _window_means(rows: np.ndarray, width: int) -> np.ndarray:
    """Mean colour of every run of `width` pixels along each row: out[r, x] averages rows[r, x:x+width]."""
    summed = np.cumsum(np.pad(rows, ((0, 0), (1, 0), (0, 0))), axis=1, dtype=np.float64)
    return (summed[:, width:] - summed[:, :-width]) / width


def _colour_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a - b) ** 2).sum(axis=-1) / 3.0)


def seam_score(image: Image.Image) -> float:
    """How much the image looks like two panels pasted side by side: 0 for none, up to 1 (higher = more seam-like).

    For each candidate line in the central band and each row, the straddle contrast is the colour difference between
    the pixels just left and just right of the line, minus the larger difference seen one window further out on
    either side. A seam (two different pictures meeting) is a step: large across the line, small beside it. A pole
    or an outline has the same background on both sides, so nothing straddles it; a gradient changes as much beside
    the line as across it. A seam must show on nearly every row (`ROW_SHARE`), so the score of a line is that
    low quantile of its rows' contrasts, and the image's score is its best line's.
    """
    rgb = image.convert("RGB")
    height = max(8, round(rgb.height * WORK_WIDTH / rgb.width))
    pixels = np.asarray(rgb.resize((WORK_WIDTH, height), Image.BILINEAR), dtype=np.float32) / 255.0
    means = _window_means(pixels, WINDOW)  # means[:, x] covers pixels x .. x+WINDOW-1
    reach = GAP + WINDOW
    lines = np.arange(max(int(WORK_WIDTH * BAND[0]), 2 * reach), min(int(WORK_WIDTH * BAND[1]), WORK_WIDTH - 2 * reach))
    left = means[:, lines - reach]
    right = means[:, lines + GAP]
    far_left = means[:, lines - reach - WINDOW]
    far_right = means[:, lines + GAP + WINDOW]
    across = _colour_distance(left, right)
    beside = np.maximum(_colour_distance(far_left, left), _colour_distance(right, far_right))
    straddle = np.clip(across - beside, 0.0, None)
    if DRIFT:
        padded = np.pad(straddle, ((0, 0), (DRIFT, DRIFT)), mode="edge")
        straddle = np.max([padded[:, shift:shift + straddle.shape[1]] for shift in range(2 * DRIFT + 1)], axis=0)
    per_line = np.quantile(straddle, 1.0 - ROW_SHARE, axis=0)
    return float(per_line.max()) if per_line.size else 0.0


@dataclass(frozen=True)
class SeamCalibration:
    threshold: float
    auc: float | None
    positives: int
    negatives: int
    source: str


DEFAULT_THRESHOLD = 0.05  # between the synthetic seams (0.06 and up) and poles, outlines, gradients (under 0.055)
MIN_AUC = 0.8  # a calibration that separates less than this is not used


def roc_auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """The chance that a random positive scores above a random negative (ties count half)."""
    pos, neg = np.asarray(positives, dtype=np.float64), np.asarray(negatives, dtype=np.float64)
    if not len(pos) or not len(neg):
        raise ValueError("ROC AUC needs at least one positive and one negative score")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def calibrate(positives: Sequence[float], negatives: Sequence[float], source: str) -> SeamCalibration:
    """The threshold that best separates the project's composites (positives) from its originals (negatives):
    the cut with the highest balanced accuracy, placed midway between the two scores it falls between."""
    if not positives or not negatives:
        return SeamCalibration(DEFAULT_THRESHOLD, None, len(positives), len(negatives),
                               "default (nothing to calibrate on)")
    values = np.unique(np.concatenate([positives, negatives]))
    cuts = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    pos, neg = np.asarray(positives), np.asarray(negatives)
    balanced = [((pos > cut).mean() + (neg <= cut).mean()) / 2 for cut in cuts]
    best = float(max(balanced))
    chosen = [cut for cut, value in zip(cuts, balanced, strict=True) if value == best]
    threshold = float(chosen[len(chosen) // 2])
    auc = roc_auc(positives, negatives)
    if auc < MIN_AUC:  # the composites show no seam (e.g. both cells on one plain background): nothing learnt
        return SeamCalibration(DEFAULT_THRESHOLD, auc, len(pos), len(neg),
                               f"default: {source} do not separate (AUC under {MIN_AUC})")
    return SeamCalibration(max(threshold, 1e-6), auc, len(pos), len(neg), source)
