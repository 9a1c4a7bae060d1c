"""Rates with 95 % Wilson intervals, per epoch and per prompt group, and the best-epoch rule. Pure."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from onetwo.eval.identify import GROUP_CLASSES, SINGLE_CLASSES, Verdict
from onetwo.eval.traits import HINTS

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Rate:
    hits: int
    total: int

    @property
    def value(self) -> float | None:
        return self.hits / self.total if self.total else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson(self.hits, self.total)

    def as_dict(self) -> dict:
        low, high = self.interval or (None, None)
        return {"hits": self.hits, "total": self.total, "rate": self.value, "low": low, "high": high}


def wilson(hits: int, total: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval: sound at 0 and at n, unlike the normal approximation."""
    if total <= 0:
        return None
    p = hits / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    spread = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - spread), min(1.0, centre + spread)


@dataclass(frozen=True)
class Summary:
    """Counts of one set of verdicts (an epoch, or an epoch's prompt group) and the rates the report shows."""

    group_counts: dict[str, int]
    single_counts: dict[str, int]
    leaks: int
    images: int
    hints: dict[str, int] = field(default_factory=dict)  # group images with a trait-swapped / merged figure

    @property
    def groups(self) -> int:
        return sum(self.group_counts.values())

    @property
    def singles(self) -> int:
        return sum(self.single_counts.values())

    def rates(self) -> dict[str, Rate]:
        return {
            "pair_success": Rate(self.group_counts["correct"], self.groups),
            "swapped": Rate(self.group_counts["swapped"], self.groups),
            "clone": Rate(self.group_counts["clone"], self.groups),
            "blend": Rate(self.group_counts["blend"], self.groups),
            "leak": Rate(self.leaks, self.images),
            "single_accuracy": Rate(self.single_counts["correct"], self.singles),
            "trait_swap": Rate(self.hints.get("trait_swap", 0), self.groups),
            "merged": Rate(self.hints.get("merged", 0), self.groups),
        }


def summarize(verdicts: Iterable[Verdict]) -> Summary:
    group_counts = dict.fromkeys(GROUP_CLASSES, 0)
    single_counts = dict.fromkeys(SINGLE_CLASSES, 0)
    hints = dict.fromkeys(HINTS, 0)
    leaks = images = 0
    for verdict in verdicts:
        images += 1
        leaks += verdict.leak
        (single_counts if verdict.single else group_counts)[verdict.label] += 1
        if not verdict.single:
            for hint in verdict.hints:
                hints[hint] += 1
    return Summary(group_counts, single_counts, leaks, images, hints)


@dataclass(frozen=True)
class BestEpochRule:
    """Highest pair success among the epochs whose single-character accuracy is at least `min_single` and whose leak
    rate is at most `max_leak`; ties go to the higher single-character accuracy, then the lower leak rate, then the
    earlier epoch. When no epoch qualifies, the rule says so and picks among all epochs."""

    min_single: float = 0.8
    max_leak: float = 0.1

    def describe(self) -> str:
        return (f"highest pair success among epochs with single-character accuracy >= {self.min_single:g} and leak "
                f"rate <= {self.max_leak:g}; ties: higher single accuracy, lower leak, earlier epoch")


@dataclass(frozen=True)
class BestEpoch:
    epoch: int | None
    eligible: tuple[int, ...]
    within_bounds: bool


def best_epoch(summaries: dict[int, Summary], rule: BestEpochRule) -> BestEpoch:
    def qualifies(summary: Summary) -> bool:
        rates = summary.rates()
        single, leak = rates["single_accuracy"].value, rates["leak"].value
        return (single is None or single >= rule.min_single) and (leak is None or leak <= rule.max_leak)

    def rank(epoch: int) -> tuple[float, float, float, int]:
        rates = summaries[epoch].rates()
        return (rates["pair_success"].value or 0.0, rates["single_accuracy"].value or 0.0,
                -(rates["leak"].value or 0.0), -epoch)

    eligible = tuple(sorted(epoch for epoch, summary in summaries.items() if qualifies(summary)))
    pool: Sequence[int] = eligible or tuple(sorted(summaries))
    if not pool:
        return BestEpoch(None, (), False)
    return BestEpoch(max(pool, key=rank), eligible, bool(eligible))
