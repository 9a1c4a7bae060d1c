"""Captions: tags in, kohya caption text and sample prompts out. Pure functions, no I/O but the optional tokenizer."""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from onetwo.kohya.families import CLIP_TOKENS, FAMILIES, TokenBudget
from onetwo.project.config import Project, kohya_token

MAX_TOKEN_LENGTH = 225
# CLIP's own pre-tokenizer splits letters, single digits and punctuation runs; this mirrors it without \p classes.
_CHUNKS = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+", re.IGNORECASE)


def parse_tags(text: str) -> tuple[str, ...]:
    """Tags of a kohya caption file: comma- or newline-separated, whitespace-trimmed, empties dropped."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return tuple(tag for tag in (part.strip() for part in re.split(r"[,\n]", text)) if tag)


def tag_key(tag: str) -> str:
    """A tag as boorus and kohya users spell it interchangeably: any case, `_` or any run of spaces between words."""
    return " ".join(tag.replace("_", " ").split()).casefold()


def without_token(tags: Sequence[str], name: str, class_token: str = "") -> tuple[str, ...]:
    """The tags minus the character's own token (the name, or the name and its class: `alice girl`), which the
    caption template places first anyway."""
    dropped = {tag_key(name), tag_key(kohya_token(name, class_token))}
    return tuple(tag for tag in tags if tag_key(tag) not in dropped)


def join_caption(text: str) -> str:
    """Drop empty comma-separated parts a template leaves when a side has no tags."""
    return ", ".join(part.strip() for part in text.split(",") if part.strip())


def single_caption(template: str, name: str, tags: Sequence[str], class_token: str = "") -> str:
    """`{name}` is the kohya token, the name then its class (`alice girl`): one token, which keep_tokens keeps."""
    tags_text = ", ".join(without_token(tags, name, class_token))
    return join_caption(template.format(name=kohya_token(name, class_token), tags=tags_text))


def composite_fields(names: Sequence[str], tags: Sequence[Sequence[str]],
                     stand_ins: Sequence[str] = ()) -> dict[str, str]:
    """Template fields, left to right: {names} "A/B", {tags}, {name1}/{tags1}..., and {left}/{right}... for pairs.

    The sides' count tags become one set at the front (`merge_count_tags`); a side left with no tags is captioned
    with its stand-in (the class token or the name), so the next side's tags never slide into its place.
    """
    front, own = merge_count_tags([without_token(side, name) for side, name in zip(tags, names, strict=True)])
    filled = [list(side) or [stand_in] for side, stand_in in zip(own, stand_ins or names, strict=True)]
    filled[0][:0] = front
    sides = [", ".join(side) for side in filled]
    fields = {"names": "/".join(names), "tags": ", ".join(sides)}
    for index, (name, side) in enumerate(zip(names, sides, strict=True), start=1):
        fields[f"name{index}"], fields[f"tags{index}"] = name, side
    if len(names) == 2:
        fields.update(left=names[0], right=names[1], left_tags=sides[0], right_tags=sides[1])
    return fields


def composite_caption(template: str, names: Sequence[str], tags: Sequence[Sequence[str]],
                      stand_ins: Sequence[str] = ()) -> str:
    return join_caption(template.format(**composite_fields(names, tags, stand_ins)))


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


def count_tokens(text: str, limit: int = MAX_TOKEN_LENGTH, counter: TokenCounter | None = None) -> tuple[int, bool]:
    """(token count, exact?) — the estimate is trusted when under the limit, else the real tokenizer decides.
    `counter`: the family's (caption_counter); CLIP's by default."""
    if counter is not None:
        return counter.count(text)
    estimate = estimate_tokens(text)
    if estimate <= limit:
        return estimate, False
    tokenizer = real_tokenizer()
    return (tokenizer(text), True) if tokenizer else (estimate, False)


def estimate_qwen3_tokens(text: str) -> int:
    """A count of Qwen3 tokens that is never low: its byte-level BPE gives every token at least one UTF-8 byte
    (after the tokenizer's NFC normalisation), and adds no special tokens to a caption."""
    return len(unicodedata.normalize("NFC", text).encode("utf-8"))


@functools.cache
def qwen3_tokenizer(folder: str) -> Callable[[str], int] | None:
    """The Qwen3 tokenizer of a model folder (as sd-scripts' anima_utils.load_qwen3_tokenizer loads it, with
    transformers' AutoTokenizer), when transformers is importable and the folder has one; never downloads."""
    try:
        from transformers import AutoTokenizer  # type: ignore[import-not-found]

        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception:  # any failure means: not available here, use the estimate
        return None
    return lambda text: len(tokenizer(text)["input_ids"])


@dataclass(frozen=True)
class TokenCounter:
    """A family's caption budget (families.TokenBudget) with where its real tokenizer is: count() gives (tokens,
    exact?), the estimate where it is under the budget or the tokenizer cannot be loaded."""

    budget: TokenBudget
    tokenizer_dir: Path | None = None  # Qwen3: the folder whose tokenizer the trainer reads

    @property
    def limit(self) -> int:
        return self.budget.limit

    @property
    def name(self) -> str:
        return f"{self.budget.tokenizer} tokens"

    def estimate(self, text: str) -> int:
        return estimate_qwen3_tokens(text) if self.budget.tokenizer == "Qwen3" else estimate_tokens(text)

    def count(self, text: str) -> tuple[int, bool]:
        estimate = self.estimate(text)
        if estimate <= self.limit:
            return estimate, False
        if self.budget.tokenizer == "Qwen3":
            tokenizer = qwen3_tokenizer(str(self.tokenizer_dir)) if self.tokenizer_dir else None
        else:
            tokenizer = real_tokenizer()
        return (tokenizer(text), True) if tokenizer else (estimate, False)

    def __call__(self, text: str) -> int:
        return self.count(text)[0]


def caption_counter(project: Project) -> TokenCounter:
    """The project's family's counter. Qwen3's tokenizer is the one anima_train_network.py reads: the text_encoder
    folder's own, or for a single file the checkout's configs/qwen3_06b (anima_utils.load_qwen3_tokenizer)."""
    budget = FAMILIES[project.model].tokens
    if budget.tokenizer != "Qwen3":
        return TokenCounter(budget)
    encoder = project.model_files.get("text_encoder")
    folder = encoder if encoder is not None and encoder.is_dir() else project.sd_scripts / "configs" / "qwen3_06b"
    return TokenCounter(budget, folder)


CLIP_COUNTER = TokenCounter(CLIP_TOKENS)


def trim_to_budget(template: str, names: Sequence[str], tags: Sequence[Sequence[str]],
                   limit: int = MAX_TOKEN_LENGTH, counter: Callable[[str], int] = estimate_tokens,
                   stand_ins: Sequence[str] = ()) -> str:
    """Drop trailing tags from the longest side first, so both characters keep their leading tags."""
    sides = [list(without_token(side, name)) for side, name in zip(tags, names, strict=True)]
    caption = composite_caption(template, names, sides, stand_ins)
    while counter(caption) > limit and any(sides):
        longest = max(range(len(sides)), key=lambda index: (len(sides[index]), -index))
        sides[longest].pop()
        caption = composite_caption(template, names, sides, stand_ins)
    return caption


def top_tags(tag_lists: Sequence[Sequence[str]], name: str, count: int) -> tuple[str, ...]:
    """The character's most frequent tags, ties broken alphabetically, for deterministic sample prompts."""
    counts = Counter(tag for tags in tag_lists for tag in dict.fromkeys(without_token(tags, name)))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple(tag for tag, _ in ranked[:count])


def sample_prompt_line(prompt: str, negative: str, width: int, height: int, steps: int, scale: float,
                       seed: int) -> str:
    """One line of kohya's sample-prompt syntax; sizes rounded down to multiples of 8 as kohya does. The prompt is
    a caption, which kohya trained on as literal text: it is escaped so the sampler reads it the same way (the
    negative prompt is the user's own prompt syntax and stays as written)."""
    options = [f"--w {max(64, width // 8 * 8)}", f"--h {max(64, height // 8 * 8)}", f"--s {steps}",
               f"--l {scale:g}", f"--d {seed}"]
    if negative:
        options.insert(0, f"--n {negative}")
    return " ".join([prompt_escape(prompt), *options])


# Booru tags that count the figures of a picture (`1girl`, `2boys`, `6+girls`, `1other`): each side of a composite
# brings its own, while the composite holds them all.
_COUNT_TAG = re.compile(r"(\d+)\+?(girl|boy|other)s?")
COUNT_KINDS = ("girl", "boy", "other")
# A composite is never `solo`; `multiple girls` says "two or more" without a number, so counts cannot be summed.
_SOLO_TAGS = frozenset({"solo", "solo focus"})
_VAGUE_COUNTS = frozenset({"multiple girls", "multiple boys", "multiple others"})


def count_tag(tag: str) -> tuple[str, int] | None:
    """("girl", 2) for `2girls` (`6+girls` counts 6), None for a tag that counts nothing."""
    match = _COUNT_TAG.fullmatch(tag_key(tag))
    return (match.group(2), int(match.group(1))) if match and int(match.group(1)) > 0 else None


def count_tags_for(totals: dict[str, int]) -> tuple[str, ...]:
    """{"girl": 2, "boy": 1} → ("2girls", "1boy"): booru spelling, girls then boys then others, 6 and up `6+`."""
    spelled = []
    for kind in COUNT_KINDS:
        number = totals.get(kind, 0)
        if number == 1:
            spelled.append(f"1{kind}")
        elif number > 1:
            spelled.append(f"{min(number, 6)}{'+' if number >= 6 else ''}{kind}s")
    return tuple(spelled)


def merge_count_tags(sides: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """(count tags of the whole composite, each side's tags without them), for the caption's front.

    `solo` and `solo focus` are dropped from every side. When every side counts its figures (`1girl`, `1boy`), the
    counts are summed into one set (`1girl` + `1girl` → `2girls`; `1girl` + `1boy` → `1girl, 1boy`); when a side
    says nothing countable (no count tag, or only `multiple girls`), every side keeps its own count tags.
    """
    kept = [tuple(tag for tag in side if tag_key(tag) not in _SOLO_TAGS) for side in sides]
    counts = [[found for tag in side if (found := count_tag(tag))] for side in kept]
    vague = any(tag_key(tag) in _VAGUE_COUNTS for side in kept for tag in side)
    if vague or not all(counts):
        return (), kept
    totals: Counter[str] = Counter()
    for side in counts:
        for kind, number in side:
            totals[kind] += number
    return count_tags_for(totals), [tuple(tag for tag in side if not count_tag(tag)) for side in kept]


def prompt_escape(text: str) -> str:
    """`rin_(fate)` → `rin_\\(fate\\)`: the text as literal text for kohya's sampler and the generation UIs, whose
    prompt parsers read `(…)` and `[…]` as attention weights (a backslash escapes a bracket and itself)."""
    return re.sub(r"([\\()\[\]])", r"\\\1", text)


# What the sampler and the UIs read as attention (`(smile:1.2)`, `(smile)`, `[smile]`, NovelAI's `{smile}`) or as
# an escape (`rin_\(fate\)`); in a training caption kohya keeps all of it as literal text.
_WEIGHTING = (
    (re.compile(r"\([^()]*:\s*[+-]?(\d+\.?\d*|\.\d+)\s*\)"), "a weight"),
    (re.compile(r"^\(.*\)$|^\[.*\]$|^\{.*\}$"), "emphasis brackets"),
    (re.compile(r"\\[()\[\]]"), "escaped brackets"),
)


def weighting_syntax(tag: str) -> str | None:
    """What prompt-weighting syntax `tag` holds ("a weight", "emphasis brackets", "escaped brackets"), or None.
    Booru names like `rin_(fate)` are plain tags: only a bracket around the whole tag reads as emphasis."""
    for pattern, what in _WEIGHTING:
        if pattern.search(tag.strip()):
            return what
    return None
