"""Wilson intervals and the best-epoch rule."""

from __future__ import annotations

import pytest

pytest.importorskip("numpy", reason="onetwo eval needs numpy: pip install 'onetwo[eval]'")

from onetwo.eval.identify import Verdict
from onetwo.eval.stats import BestEpochRule, best_epoch, summarize, wilson


def test_wilson_matches_the_textbook_values() -> None:
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 5)[0] == 0.0 and wilson(0, 5)[1] == pytest.approx(0.4345, abs=1e-4)
    assert wilson(5, 5)[1] == 1.0
    assert wilson(0, 0) is None


def verdicts(pairs: list[str], singles: list[str], leaks: int = 0) -> list[Verdict]:
    made = [Verdict(("a", "b"), label, (), False, 0.0) for label in pairs]
    made += [Verdict(("a",), label, (), False, 0.0) for label in singles]
    return [Verdict(v.prompted, v.label, v.figures, index < leaks, 0.0) for index, v in enumerate(made)]


def test_summary_counts_and_rates() -> None:
    summary = summarize(verdicts(["correct", "correct", "clone", "swapped"], ["correct", "wrong_character"], 1))
    rates = summary.rates()
    assert summary.group_counts["clone"] == 1 and summary.groups == 4 and summary.singles == 2
    assert rates["pair_success"].value == 0.5 and rates["single_accuracy"].value == 0.5
    assert rates["leak"].hits == 1 and rates["leak"].total == 6


def test_best_epoch_is_the_best_pair_success_within_bounds() -> None:
    summaries = {
        1: summarize(verdicts(["clone"] * 4, ["correct"] * 2)),
        2: summarize(verdicts(["correct"] * 4, ["wrong_character"] * 2)),  # best pairs, forgot the singles
        3: summarize(verdicts(["correct"] * 3 + ["clone"], ["correct"] * 2)),
        4: summarize(verdicts(["correct"] * 3 + ["swapped"], ["correct"] * 2)),  # ties with 3: earlier wins
        5: summarize(verdicts(["correct"] * 4, ["correct"] * 2, leaks=2)),  # leaks
    }
    best = best_epoch(summaries, BestEpochRule(min_single=0.8, max_leak=0.1))
    assert best.epoch == 3 and best.eligible == (1, 3, 4) and best.within_bounds


def test_best_epoch_falls_back_when_nothing_qualifies() -> None:
    summaries = {1: summarize(verdicts(["correct"], ["wrong_character"])),
                 2: summarize(verdicts(["clone"], ["wrong_character"]))}
    best = best_epoch(summaries, BestEpochRule())
    assert best.epoch == 1 and not best.within_bounds and best.eligible == ()


def test_contact_sheet_rows_spread_over_the_run_and_keep_the_best() -> None:
    from onetwo.eval.report import sheet_epochs

    assert sheet_epochs([1, 2, 3], best=2) == [1, 2, 3]
    chosen = sheet_epochs(list(range(1, 41)), best=17)
    assert len(chosen) == 6 and chosen[0] == 1 and chosen[-1] == 40 and 17 in chosen
