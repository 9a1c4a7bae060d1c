"""Assignment and classification, on distance tables written by hand."""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy", reason="onetwo eval needs numpy: pip install 'onetwo[eval]'")

from onetwo.eval.identify import assign, classify, figures_of  # noqa: E402

NAMES = ["aoi", "midori", "murasaki"]
BOX = (0.0, 0.0, 1.0, 1.0)


def verdict(prompted: tuple[str, ...], rows: list[list[float]], threshold: float = 0.3, margin: float = 0.075) -> str:
    return classify(prompted, figures_of([BOX] * len(rows), np.array(rows), NAMES, threshold, margin))


def test_assignment_is_optimal_not_greedy() -> None:
    # greedy would give figure 0 its nearest (aoi, 0.10) and leave figure 1 nothing within the threshold
    distances = np.array([[0.10, 0.12, 0.9], [0.11, 0.5, 0.9]])
    assert assign(distances, 0.3) == [1, 0]


def test_assignment_leaves_figures_beyond_the_threshold_unknown() -> None:
    assert assign(np.array([[0.5, 0.6, 0.7], [0.1, 0.9, 0.9]]), 0.3) == [None, 0]


@pytest.mark.parametrize(("prompted", "rows", "label"), [
    (("aoi", "midori"), [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]], "correct"),
    (("aoi", "midori"), [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], "swapped"),
    (("aoi", "midori"), [[0.0, 1.0, 1.0], [0.05, 1.0, 1.0]], "clone"),
    (("aoi", "midori"), [[0.0, 1.0, 1.0], [0.29, 0.29, 1.0]], "blend"),
    (("aoi", "midori"), [[0.0, 1.0, 1.0], [0.8, 0.9, 0.7]], "blend"),  # matches no reference
    (("aoi", "midori"), [[0.0, 1.0, 1.0]], "missing"),
    (("aoi", "midori"), [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]], "extra"),
    (("aoi", "midori"), [[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]], "wrong_character"),
    (("aoi", "midori", "murasaki"), [[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]], "swapped"),
    (("aoi",), [[0.0, 1.0, 1.0]], "correct"),
    (("aoi",), [[1.0, 0.0, 1.0]], "wrong_character"),
    (("aoi",), [[0.1, 1.0, 1.0], [0.0, 1.0, 1.0]], "duplicated"),
    (("aoi",), [], "missing"),
])
def test_classes(prompted: tuple[str, ...], rows: list[list[float]], label: str) -> None:
    assert verdict(prompted, rows) == label


def test_near_tie_under_the_threshold_is_a_blend_only_within_the_margin() -> None:
    assert verdict(("aoi", "midori"), [[0.0, 1.0, 1.0], [0.25, 0.05, 1.0]]) == "correct"
    assert verdict(("aoi", "midori"), [[0.0, 1.0, 1.0], [0.25, 0.2, 1.0]]) == "blend"
