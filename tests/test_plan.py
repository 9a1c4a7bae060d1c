from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from onetwo.data.composite import CompositeJob, cell_spans, plan
from onetwo.data.scan import CharacterImages, SourceImage
from onetwo.project.config import Character, CompositeSettings


def scans(counts: dict[str, int]) -> list[CharacterImages]:
    result = []
    for name, count in counts.items():
        character = Character(name, Path(f"/data/{name}"), None, False, name)
        images = tuple(SourceImage(Path(f"/data/{name}/{i}.png"), f"{i}.png", (f"{name}-tag",), True, 10, i)
                       for i in range(count))
        result.append(CharacterImages(character, images, 1, ()))
    return result


def make_plan(counts: dict[str, int], **settings) -> list[CompositeJob]:
    return plan(scans(counts), CompositeSettings(**settings))


@pytest.mark.parametrize("per_pair", [1, 4, 7, 40])
def test_every_pair_gets_its_count_with_balanced_orders(per_pair: int) -> None:
    jobs = make_plan({"a": 5, "b": 3, "c": 8}, per_pair=per_pair)
    pairs = Counter(frozenset(job.names) for job in jobs)
    assert set(pairs.values()) == {per_pair} and len(pairs) == 3
    orders = Counter(job.names for job in jobs)
    for first, second in [("a", "b"), ("a", "c"), ("b", "c")]:
        assert abs(orders[(first, second)] - orders[(second, first)]) <= 1
    forward = sum(count for (x, y), count in orders.items() if x < y)
    assert abs(forward - sum(orders.values()) / 2) <= 1


def test_sources_are_used_evenly() -> None:
    jobs = make_plan({"a": 7, "b": 3, "c": 5}, per_pair=40)
    for name in "abc":
        uses = Counter(source.path for job in jobs for source in job.sources if source.path.parent.name == name)
        assert max(uses.values()) - min(uses.values()) <= 1, name


def test_halves_come_from_the_named_characters() -> None:
    for job in make_plan({"a": 2, "b": 2, "c": 2}, per_pair=6):
        assert [source.path.parent.name for source in job.sources] == list(job.names)
        assert job.caption.startswith(f"{job.names[0]}/{job.names[1]}/COMPOSITE")


def test_plan_is_deterministic_and_seeded() -> None:
    first = make_plan({"a": 6, "b": 6}, per_pair=10, seed=3)
    assert first == make_plan({"a": 6, "b": 6}, per_pair=10, seed=3)
    assert first != make_plan({"a": 6, "b": 6}, per_pair=10, seed=4)


def test_stems_are_unique_and_keys_change_with_geometry() -> None:
    jobs = make_plan({"a": 3, "b": 3, "c": 3}, per_pair=10)
    assert len({job.stem for job in jobs}) == len(jobs)
    wider = make_plan({"a": 3, "b": 3, "c": 3}, per_pair=10, width=1024, height=768)
    assert all(x.key != y.key for x, y in zip(jobs, wider, strict=True))


def test_trimmed_captions_fit() -> None:
    many = tuple(f"tag number {i}" for i in range(200))
    base = scans({"a": 1, "b": 1})
    base = [CharacterImages(s.character, tuple(SourceImage(i.path, i.rel, many, True, 1, 1) for i in s.images),
                            1, ()) for s in base]
    from onetwo.data.captions import estimate_tokens

    untrimmed = plan(base, CompositeSettings(per_pair=2))
    trimmed = plan(base, CompositeSettings(per_pair=2, trim_captions=True))
    assert estimate_tokens(untrimmed[0].caption) > 225 >= estimate_tokens(trimmed[0].caption)


def test_cells_fill_the_width_with_gaps() -> None:
    assert cell_spans(768, [0.5, 0.5], 16) == ((0, 376), (392, 376))
    assert cell_spans(101, [0.5, 0.5], 0) == ((0, 50), (50, 51))
    assert cell_spans(900, [0.5, 0.5, 0.5], 0) == ((0, 300), (300, 300), (600, 300))
    assert cell_spans(1000, [1.0, 0.5, 0.5], 0) == ((0, 500), (500, 250), (750, 250))
