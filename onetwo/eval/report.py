"""What eval shows: the printed table, report.json, the curves over epochs and the annotated contact sheet."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from onetwo.eval.identify import GROUP_CLASSES, SINGLE_CLASSES
from onetwo.eval.score import Scored, load_rgb
from onetwo.eval.stats import BestEpoch, BestEpochRule, Rate, Summary, summarize
from onetwo.fsutil import atomic_path, write_text_atomic

CURVES = (("pair_success", (30, 110, 200)), ("clone", (210, 60, 60)), ("blend", (230, 150, 20)),
          ("leak", (120, 60, 160)), ("single_accuracy", (40, 150, 70)))
LABEL_COLOURS = {"correct": (40, 150, 70), "swapped": (230, 150, 20), "clone": (210, 60, 60),
                 "blend": (200, 90, 160), "missing": (90, 90, 90), "extra": (90, 90, 90),
                 "wrong_character": (210, 60, 60), "duplicated": (210, 60, 60)}


def by_epoch(scored: Sequence[Scored]) -> dict[int, list[Scored]]:
    epochs: dict[int, list[Scored]] = {}
    for item in sorted(scored, key=lambda item: (item.sample.epoch, item.sample.prompt_index, str(item.sample.path))):
        epochs.setdefault(item.sample.epoch, []).append(item)
    return epochs


def epoch_summaries(scored: Sequence[Scored]) -> dict[int, Summary]:
    return {epoch: summarize(item.verdict for item in items) for epoch, items in by_epoch(scored).items()}


def _percent(rate: Rate) -> str:
    if rate.value is None:
        return "-"
    low, high = rate.interval or (0.0, 0.0)
    return f"{rate.value:4.0%} [{low:.0%}-{high:.0%}]"


def table(summaries: dict[int, Summary], best: BestEpoch, tagged: bool = False) -> str:
    """One line per epoch: counts and rates with their 95 % intervals; `*` marks the best epoch. `tagged`: the
    pair images with a trait-swapped and with a merged figure too."""
    header = (f"{'epoch':>6} {'imgs':>5} {'pair success':>17} {'swapped':>7} {'clone':>5} {'blend':>5} "
              f"{'miss':>4} {'extra':>5} {'wrong':>5} {'leak':>16} {'single accuracy':>17}"
              + (f" {'trait swap':>10} {'merged':>6}" if tagged else ""))
    lines = [header, "-" * len(header)]
    for epoch, summary in summaries.items():
        rates, counts = summary.rates(), summary.group_counts
        mark = "*" if epoch == best.epoch else " "
        lines.append(f"{epoch:>5}{mark} {summary.images:>5} {_percent(rates['pair_success']):>17} "
                     f"{counts['swapped']:>7} {counts['clone']:>5} {counts['blend']:>5} {counts['missing']:>4} "
                     f"{counts['extra']:>5} {counts['wrong_character']:>5} {_percent(rates['leak']):>16} "
                     f"{_percent(rates['single_accuracy']):>17}"
                     + (f" {summary.hints.get('trait_swap', 0):>10} {summary.hints.get('merged', 0):>6}"
                        if tagged else ""))
    return "\n".join(lines)


def prompt_table(scored: Sequence[Scored], tagged: bool = False) -> str:
    """One line per prompt over all epochs: how each pair (in each order) and each character alone fares."""
    groups: dict[str, list[Scored]] = {}
    for item in scored:
        groups.setdefault("/".join(item.sample.characters), []).append(item)
    lines = [f"{'prompt (all epochs)':<32} {'imgs':>5} {'success':>17}  most common failure"
             + ("  (trait swap, merged)" if tagged else "")]
    for key, items in sorted(groups.items(), key=lambda entry: (entry[0].count("/"), entry[0])):
        summary = summarize(item.verdict for item in items)
        single = summary.singles > 0
        counts = summary.single_counts if single else summary.group_counts
        rate = Rate(counts["correct"], summary.singles if single else summary.groups)
        failures = sorted(((count, label) for label, count in counts.items() if label != "correct" and count),
                          reverse=True)
        worst = f"{failures[0][1]} ({failures[0][0]})" if failures else "-"
        hints = (f"  ({summary.hints.get('trait_swap', 0)}, {summary.hints.get('merged', 0)})"
                 if tagged and not single else "")
        lines.append(f"{key[:32]:<32} {summary.images:>5} {_percent(rate):>17}  {worst}{hints}")
    return "\n".join(lines)


def _summary_dict(summary: Summary) -> dict[str, Any]:
    return {"images": summary.images, "groups": dict(summary.group_counts), "singles": dict(summary.single_counts),
            "leaks": summary.leaks, "hints": dict(summary.hints),
            "rates": {name: rate.as_dict() for name, rate in summary.rates().items()}}


def report_document(scored: Sequence[Scored], summaries: dict[int, Summary], best: BestEpoch, rule: BestEpochRule,
                    context: dict[str, Any], root: Path) -> dict[str, Any]:
    epochs = []
    for epoch, items in by_epoch(scored).items():
        groups: dict[str, list[Scored]] = {}
        for item in items:
            groups.setdefault("/".join(item.sample.characters), []).append(item)
        epochs.append({"epoch": epoch, **_summary_dict(summaries[epoch]),
                       "prompts": {key: _summary_dict(summarize(entry.verdict for entry in value))
                                   for key, value in sorted(groups.items())}})

    def relative(path: Path) -> str:
        try:
            return str(path.relative_to(root))
        except ValueError:
            return str(path)

    images = [{"file": relative(item.sample.path), "epoch": item.sample.epoch, "prompt": item.sample.prompt_index,
               "seed": item.sample.seed, "source": item.sample.source, "lora_hash": item.sample.lora_hash,
               "characters": list(item.sample.characters), "class": item.verdict.label,
               "seam": round(item.verdict.seam, 5), "leak": item.verdict.leak,
               "figures": [{"box": [round(v, 1) for v in figure.box], "name": figure.name, "closest": figure.best,
                            "difference": round(figure.distance, 5), "ambiguous": figure.ambiguous,
                            "tags": list(figure.tags), "hint": figure.hint}
                           for figure in item.verdict.figures]}
              for items in by_epoch(scored).values() for item in items]
    return {**context, "classes": {"group": list(GROUP_CLASSES), "single": list(SINGLE_CLASSES)},
            "best_epoch": {"epoch": best.epoch, "rule": rule.describe(), "eligible": list(best.eligible),
                           "within_bounds": best.within_bounds},
            "totals": _summary_dict(summarize(item.verdict for item in scored)),
            "epochs": epochs, "images": images}


def write_json(path: Path, document: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(document, indent=1, ensure_ascii=False) + "\n")


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def curves(summaries: dict[int, Summary], best: BestEpoch, target: Path, width: int = 900,
           height: int = 480) -> Path:
    """The rates over epochs, one line each, 95 % intervals as light bands; the best epoch as a dashed line."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image, "RGBA")
    font = _font(13)
    left, right, top, bottom = 60, width - 180, 30, height - 50
    epochs = list(summaries)
    first, last = (min(epochs), max(epochs)) if epochs else (0, 1)
    span = max(1, last - first)

    def x_of(epoch: float) -> float:
        return left + (epoch - first) / span * (right - left) if len(epochs) > 1 else (left + right) / 2

    def y_of(value: float) -> float:
        return bottom - value * (bottom - top)

    for tick in range(0, 11, 2):
        y = y_of(tick / 10)
        draw.line((left, y, right, y), fill=(225, 225, 225))
        draw.text((left - 8, y), f"{tick * 10}%", fill="black", font=font, anchor="rm")
    for epoch in epochs:
        draw.text((x_of(epoch), bottom + 8), str(epoch), fill="black", font=font, anchor="mt")
    draw.rectangle((left, top, right, bottom), outline="black")
    draw.text(((left + right) / 2, bottom + 28), "epoch", fill="black", font=font, anchor="mt")
    if best.epoch is not None:
        x = x_of(best.epoch)
        for y in range(top, bottom, 10):
            draw.line((x, y, x, min(y + 5, bottom)), fill=(0, 0, 0), width=1)
        draw.text((x, top - 4), f"best: {best.epoch}", fill="black", font=font, anchor="mb")
    for row, (name, colour) in enumerate(CURVES):
        points, band_low, band_high = [], [], []
        for epoch in epochs:
            rate = summaries[epoch].rates()[name]
            if rate.value is None:
                continue
            low, high = rate.interval or (rate.value, rate.value)
            points.append((x_of(epoch), y_of(rate.value)))
            band_low.append((x_of(epoch), y_of(low)))
            band_high.append((x_of(epoch), y_of(high)))
        if len(points) > 1:
            draw.polygon(band_high + band_low[::-1], fill=(*colour, 28))
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
        legend_y = top + 10 + row * 22
        draw.line((right + 15, legend_y, right + 40, legend_y), fill=colour, width=3)
        draw.text((right + 46, legend_y), name.replace("_", " "), fill="black", font=font, anchor="lm")
    with atomic_path(target) as tmp:
        image.save(tmp, format="PNG")
    return target


def sheet_epochs(epochs: Sequence[int], best: int | None, rows: int = 6) -> list[int]:
    """Up to `rows` epochs evenly spread from the first to the last, the best always among them."""
    if len(epochs) <= rows:
        return list(epochs)
    chosen = {epochs[round(i * (len(epochs) - 1) / (rows - 1))] for i in range(rows)}
    if best is not None and best not in chosen:
        chosen.discard(max(chosen - {epochs[0], epochs[-1]}, key=lambda e: -abs(e - best), default=None))
        chosen.add(best)
    return sorted(chosen)


def contact_sheet(scored: Sequence[Scored], best: BestEpoch, target: Path, thumb: int = 192) -> Path:
    """One row per chosen epoch, its samples in prompt order: each with the figures' boxes and assigned names, and
    its class (and LEAK, trait swap, merged) underneath."""
    epochs = by_epoch(scored)
    rows = [epochs[epoch] for epoch in sheet_epochs(list(epochs), best.epoch)]
    columns = max((len(row) for row in rows), default=1)
    caption, label_width = 34, 56
    font = _font(12)
    sheet = Image.new("RGB", (label_width + columns * (thumb + 4), max(1, len(rows)) * (thumb + caption + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        y = r * (thumb + caption + 4)
        epoch = row[0].sample.epoch
        draw.text((4, y + thumb / 2), f"e{epoch}" + (" *" if epoch == best.epoch else ""), fill="black", font=font)
        for c, item in enumerate(row):
            x = label_width + c * (thumb + 4)
            image = load_rgb(item.sample.path)
            scale = thumb / max(image.size)
            small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
            cell = ImageDraw.Draw(small)
            for figure in item.verdict.figures:
                x0, y0, x1, y1 = (value * scale for value in figure.box)
                colour = (40, 150, 70) if figure.name in item.sample.characters else (210, 60, 60)
                cell.rectangle((x0, y0, x1, y1), outline=colour, width=2)
                cell.text((x0 + 3, y0 + 2), figure.name or "?", fill=colour, font=font)
            sheet.paste(small, (x, y))
            colour = LABEL_COLOURS.get(item.verdict.label, (0, 0, 0))
            draw.text((x, y + thumb + 2), f"{'/'.join(item.sample.characters)}"[:30], fill="black", font=font)
            leak = " LEAK" if item.verdict.leak else ""
            hints = "".join(f" {hint.replace('_', ' ')}" for hint in sorted(item.verdict.hints))
            draw.text((x, y + thumb + 17), f"{item.verdict.label}{leak}{hints}", fill=colour, font=font)
    with atomic_path(target) as tmp:
        sheet.save(tmp, format="PNG")
    return target
