"""`[composite] share`: the share of stage 2's image views per epoch that are composites, solved into whole
num_repeats for the composite subset and a whole multiplier of the replayed originals' repeats. Pure."""

from __future__ import annotations

import math
from collections.abc import Sequence

from onetwo.data.scan import CharacterImages
from onetwo.project.config import Project

MAX_REPEATS = 100  # beyond this a subset's repeats only stretch an epoch; the nearest share below it is used
CLOSE_ENOUGH = 0.01  # within a percentage point, the shortest epoch wins over a closer share


def solve_share(composites: int, replay_views: int, share: float) -> tuple[int, int]:
    """(composite num_repeats, multiplier of every replay subset's repeats) whose composite share of the views,
    composites x r / (composites x r + replay_views x k), is within CLOSE_ENOUGH of `share` with the fewest views
    (the shortest epoch), else the nearest."""
    if composites <= 0 or replay_views <= 0:
        return 1, 1
    best: tuple[float, int, int, int] | None = None
    for repeats in range(1, MAX_REPEATS + 1):
        for multiplier in range(1, MAX_REPEATS + 1):
            views = composites * repeats + replay_views * multiplier
            error = abs(composites * repeats / views - share)
            candidate = (0.0 if error <= CLOSE_ENOUGH else error, views, repeats, multiplier)
            if best is None or candidate < best:
                best = candidate
    assert best is not None
    return best[2], best[3]


def replayed(images: int, fraction: float) -> int:
    """How many of a character's images stage 2 replays (`originals.replay_selection`'s count)."""
    return max(1, round(images * fraction)) if fraction > 0 and images else 0


def stage2_repeats(project: Project, scans: Sequence[CharacterImages]) -> tuple[int, int]:
    """(the composite subset's num_repeats, the multiplier of each replay subset's repeats) for stage 2."""
    settings = project.composite
    if settings.share is None:
        return settings.repeats, 1
    composites = math.comb(len(scans), settings.group_size) * settings.per_pair
    replay_views = sum(replayed(len(scan.images), project.replay) * scan.repeats for scan in scans)
    return solve_share(composites, replay_views, settings.share)
