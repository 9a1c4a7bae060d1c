"""Captions: tags in, kohya caption text and sample prompts out. Pure functions, no I/O but the optional tokenizer."""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

MAX_TOKEN_LENGTH = 225
# CLIP's own pre-tokenizer splits letters, single digits and punctuation runs; this mirrors it without \p classes.
_CHUNKS = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+", re.IGNORECASE)


def parse_tags(text: str) -> tuple[str, ...]:
    """Tags of a kohya caption file: comma- or newline-separated, whitespace-trimmed, empties dropped."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return tuple(tag for tag in (part.strip() for part in re.split(r"[,\n]", text)) if tag)


def without_token(tags: Sequence[str], name: str) -> tuple[str, ...]:
    """The tags minus the character's own token, which the caption template places first anyway."""
    return tuple(tag for tag in tags if tag.casefold() != name.casefold())


def join_caption(text: str) -> str:
    """Drop empty comma-separated parts a template leaves when a side has no tags."""
    return ", ".join(part.strip() for part in text.split(",") if part.strip())


def single_caption(template: str, name: str, tags: Sequence[str]) -> str:
    return join_caption(template.format(name=name, tags=", ".join(without_token(tags, name))))


def composite_fields(names: Sequence[str], tags: Sequence[Sequence[str]]) -> dict[str, str]:
    """Template fields, left to right: {names} "A/B", {tags}, {name1}/{tags1}..., and {left}/{right}... for pairs."""
    sides = [", ".join(without_token(side, name)) for side, name in zip(tags, names, strict=True)]
    fields = {"names": "/".join(names), "tags": ", ".join(sides)}
    for index, (name, side) in enumerate(zip(names, sides, strict=True), start=1):
        fields[f"name{index}"], fields[f"tags{index}"] = name, side
    if len(names) == 2:
        fields.update(left=names[0], right=names[1], left_tags=sides[0], right_tags=sides[1])
    return fields


def composite_caption(template: str, names: Sequence[str], tags: Sequence[Sequence[str]]) -> str:
    return join_caption(template.format(**composite_fields(names, tags)))


def template_problem(template: str, group_size: int) -> str | None:
    """Why `template` cannot caption a composite of `group_size` characters, or None."""
    try:
        template.format(**composite_fields([f"n{i}" for i in range(group_size)], [()] * group_size))
    except (KeyError, IndexError, ValueError) as exc:
        return f"has an unknown or broken placeholder ({exc}); use {{names}}, {{tags}}, {{name1}}, {{tags1}}, ..."
    named = "{names}" in template or all(f"{{name{i}}}" in template for i in range(1, group_size + 1))
    if group_size == 2:
        named = named or ("{left}" in template and "{right}" in template)
    return None if named else "must name every character: use {names} (or {left} and {right} for pairs)"


def estimate_tokens(text: str) -> int:
    """A deliberately high count of CLIP BPE tokens, used where the real tokenizer is not installed.

    Every letter run counts one token per three letters (CLIP's vocabulary holds most English words whole),
    every digit and punctuation mark one, every non-ASCII character two.
    """
    count = 0
    for chunk in _CHUNKS.findall(text.lower()):
        if chunk[0].isalpha():
            ascii_letters = sum(1 for char in chunk if char.isascii())
            count += math.ceil(ascii_letters / 3) + 2 * (len(chunk) - ascii_letters)
        else:
            count += len(chunk)
    return count


@functools.cache
def real_tokenizer() -> Callable[[str], int] | None:
    """CLIP's tokenizer when transformers and a locally cached copy exist; never downloads."""
    try:
        from transformers import CLIPTokenizer  # type: ignore[import-not-found]

        tokenizer = CLIPTokenizer.from_pretrained("openai/clip-vit-large-patch14", local_files_only=True)
    except Exception:  # any failure means: not available here, use the estimate
        return None
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def count_tokens(text: str, limit: int = MAX_TOKEN_LENGTH) -> tuple[int, bool]:
    """(token count, exact?) — the estimate is trusted when under the limit, else the real tokenizer decides."""
    estimate = estimate_tokens(text)
    if estimate <= limit:
        return estimate, False
    tokenizer = real_tokenizer()
    return (tokenizer(text), True) if tokenizer else (estimate, False)


def trim_to_budget(template: str, names: Sequence[str], tags: Sequence[Sequence[str]],
                   limit: int = MAX_TOKEN_LENGTH, counter: Callable[[str], int] = estimate_tokens) -> str:
    """Drop trailing tags from the longest side first, so both characters keep their leading tags."""
    sides = [list(without_token(side, name)) for side, name in zip(tags, names, strict=True)]
    caption = composite_caption(template, names, sides)
    while counter(caption) > limit and any(sides):
        longest = max(range(len(sides)), key=lambda index: (len(sides[index]), -index))
        sides[longest].pop()
        caption = composite_caption(template, names, sides)
    return caption


def top_tags(tag_lists: Sequence[Sequence[str]], name: str, count: int) -> tuple[str, ...]:
    """The character's most frequent tags, ties broken alphabetically, for deterministic sample prompts."""
    counts = Counter(tag for tags in tag_lists for tag in dict.fromkeys(without_token(tags, name)))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple(tag for tag, _ in ranked[:count])


def sample_prompt_line(prompt: str, negative: str, width: int, height: int, steps: int, scale: float,
                       seed: int) -> str:
    """One line of kohya's sample-prompt syntax; sizes rounded down to multiples of 8 as kohya does."""
    options = [f"--w {max(64, width // 8 * 8)}", f"--h {max(64, height // 8 * 8)}", f"--s {steps}",
               f"--l {scale:g}", f"--d {seed}"]
    if negative:
        options.insert(0, f"--n {negative}")
    return " ".join([prompt, *options])
