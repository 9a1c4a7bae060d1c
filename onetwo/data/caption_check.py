"""What `onetwo check` says about the originals' captions: prompt syntax that kohya trains as plain text, and
captions that kohya cuts at `max_token_length`. Pure but for the look-up of each caption's file name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from onetwo.data.captions import CLIP_COUNTER, TokenCounter, single_caption, weighting_syntax
from onetwo.data.scan import CharacterImages, SourceImage, caption_files

MAX_LISTED = 10  # files named one by one; the rest are counted
KOHYA_DEFAULT_TOKENS = 75  # train_util: max_token_length unset means one CLIP window of 75 tokens


def caption_file(image: SourceImage, extension: str) -> Path:
    found = caption_files(image.path, extension)
    return found[0] if found else image.path


def _listed(lines: list[str], what: str) -> list[str]:
    extra = len(lines) - MAX_LISTED
    return lines[:MAX_LISTED] + ([f"... and {extra} more {what}"] if extra > 0 else [])


def weighting_warnings(scans: Sequence[CharacterImages]) -> list[str]:
    """One line per caption that holds `(tag:1.2)`, `(tag)`, `[tag]`, `{tag}` or `\\(`: kohya trains the brackets,
    colon and number as text (its prompt parser reads them only in sample prompts, or with weighted_captions)."""
    lines = []
    for scan in scans:
        for image in scan.images:
            found = [(tag, what) for tag in image.tags if (what := weighting_syntax(tag))]
            if found:
                tags = ", ".join(f"`{tag}` ({what})" for tag, what in found)
                lines.append(f"{caption_file(image, scan.character.caption_extension)}: {tags}: prompt-weighting "
                             "syntax, which kohya trains as literal text, brackets and numbers included; write plain "
                             "tags (`smile`, `rin_(fate)`): onetwo escapes brackets in sample prompts itself")
    return _listed(lines, "captions with prompt-weighting syntax")


def token_limit(flat_config: dict[str, Any], counter: TokenCounter = CLIP_COUNTER) -> int:
    """How many tokens of a caption the trainer reads, from the family's key (max_token_length for CLIP)."""
    budget = counter.budget
    return int(flat_config.get(budget.limit_key) or budget.trainer_default)


def long_caption_warnings(scans: Sequence[CharacterImages], template: str, limit: int,
                          counter: TokenCounter = CLIP_COUNTER) -> list[str]:
    """One line per original whose caption kohya would cut at `limit` tokens (the tags past the cut are never
    trained); a count from the estimate says so."""
    key, name = counter.budget.limit_key, counter.name
    counter = replace(counter, budget=replace(counter.budget, limit=limit))
    lines = []
    for scan in scans:
        character = scan.character
        for image in scan.images:
            caption = single_caption(template, character.name, image.tags, character.class_token)
            tokens, exact = counter.count(caption)
            if tokens > limit:
                count = f"{tokens} {name}" if exact else (
                    f"about {tokens} {name} (an estimate that counts high: transformers' "
                    f"{counter.budget.tokenizer} tokenizer is not available here)")
                lines.append(f"{caption_file(image, character.caption_extension)}: the caption is {count}, over "
                             f"{key} = {limit}; kohya cuts the rest, so its last tags are not trained: "
                             "shorten it")
    return _listed(lines, f"captions over {key}")


def caption_warnings(scans: Sequence[CharacterImages], template: str, flat_config: dict[str, Any],
                     counter: TokenCounter = CLIP_COUNTER) -> list[str]:
    """Everything `check` warns about in the originals' captions, given the stage's rendered training config and
    the family's counter."""
    weighted = bool(flat_config.get("weighted_captions"))
    return ([] if weighted else weighting_warnings(scans)) + long_caption_warnings(
        scans, template, token_limit(flat_config, counter), counter)
