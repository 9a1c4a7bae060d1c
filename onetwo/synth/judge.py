"""The verdict on `onetwo synth`'s drawings: eval's detector and identity embedder (the same backends, cache and
scoring as `onetwo eval`, needs onetwo[eval]) give each drawing's figures, the keep rule (onetwo.synth.keep) decides,
and the tagger's tags of the one figure, where a tagger runs, caption it (onetwo.synth.captions).
A character whose decision key has not changed keeps its earlier decisions, and nothing is scored for it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from onetwo.eval.backends import Backends
from onetwo.eval.cache import FeatureCache
from onetwo.eval.run import evenly
from onetwo.eval.samples import Sample
from onetwo.eval.score import Settings, load_reference, load_rgb, reference_features, score_samples
from onetwo.messages import info
from onetwo.project.config import Project
from onetwo.synth.captions import tagger_caption
from onetwo.synth.keep import Drawing, KeepRule, decide_all, difference_hash
from onetwo.synth.run import SynthRun, decision_key, read_report

REFERENCES = 16  # per character, as eval's default


@dataclass(frozen=True)
class Judged:
    document: dict[str, Any]  # report.json
    scored: tuple[str, ...]  # the characters judged anew (the rest kept their earlier decisions)


def judge(project: Project, run: SynthRun, backends: Backends, threshold: float | None = None) -> Judged:
    settings = project.synthetic
    rule = KeepRule(threshold if threshold is not None else backends.embedder.threshold, settings.margin,
                    settings.duplicate_bits)
    tagger = backends.tagger.name if backends.tagger else None
    # the tagger is in the key, so a rerun with another caption source re-captions (without redrawing)
    models = f"{backends.detector.name}|{backends.embedder.name}" + (f"|{tagger}" if tagger else "")
    earlier = read_report(project).get("characters") or {}
    characters: dict[str, Any] = {}
    todo = []
    for item in run.characters:
        name = item.character.name
        key = decision_key(run, item, project, models, rule.threshold)
        if isinstance(earlier.get(name), dict) and earlier[name].get("key") == key:
            characters[name] = earlier[name]
            info(f"synth: {name}: earlier decisions kept (same epoch file, drawings, settings and models)")
        else:
            todo.append((item, key))
    if todo:
        characters.update(_score(project, run, backends, rule, models, todo))
    background = project.composite.background
    untouched = {name: entry for name, entry in earlier.items() if name not in characters}
    document = {
        "models": {"detector": backends.detector.name, "embedder": backends.embedder.name, "tagger": tagger},
        "threshold": rule.threshold, "margin": rule.margin, "duplicate_bits": rule.duplicate_bits,
        "max_share": settings.max_share, "background": list(background),
        "characters": {**untouched, **characters},
    }
    return Judged(document, tuple(item.character.name for item, _ in todo))


def _score(project: Project, run: SynthRun, backends: Backends, rule: KeepRule, models: str,
           todo: Sequence[tuple[Any, str]]) -> dict[str, Any]:
    background = project.composite.background
    references = {item.character.name: evenly([image.path for image in item.images], REFERENCES)
                  for item in run.everyone}
    cache = FeatureCache(project.work_dir / "eval" / "cache", models)
    vectors = reference_features(references, backends, cache, background)
    out_dir = project.synthetic_dir
    samples = [Sample(entry.png(out_dir), run.file.epoch, entry.record["prompt_index"], (item.character.name,),
                      entry.record["seed"], "synth", run.file.model_hash)
               for item, _ in todo for entry in run.planned[item.character.name]]
    scored = {item.sample.path: item for item in score_samples(
        samples, vectors, backends, Settings(rule.threshold, rule.threshold / 4, float("inf")), cache,
        distinctive=run.distinctive if backends.tagger else None)}
    cache.save()
    found = {}
    for item, key in todo:
        name = item.character.name
        training = {image.rel: difference_hash(load_reference(image.path, background)) for image in item.images}
        planned = run.planned[name]
        drawings = [Drawing(entry.stem, scored[entry.png(out_dir)].verdict.figures,
                            difference_hash(load_rgb(entry.png(out_dir)))) for entry in planned]
        decisions = decide_all(name, drawings, rule, training)
        images = []
        for entry, drawing, decision, prompt in zip(planned, drawings, decisions, run.prompts[name], strict=True):
            caption = {"tags": list(prompt.tags), "caption": prompt.text, "caption_source": "prompt",
                       "dropped_tags": []}
            if backends.tagger and len(drawing.figures) == 1:
                tagged = tagger_caption(name, item.character.class_token, project.single_caption,
                                        [image.tags for image in item.images], drawing.figures[0].tags,
                                        run.distinctive)
                if tagged.tags:
                    caption = {"tags": list(tagged.tags), "caption": tagged.text,
                               "caption_source": f"tagger {backends.tagger.name}",
                               "dropped_tags": list(tagged.dropped)}
                else:  # the token alone says less than the prompt that drew it
                    caption["dropped_tags"] = list(tagged.dropped)
            images.append({
                "file": f"{entry.stem}.png", "prompt_index": entry.record["prompt_index"], "seed": entry.record["seed"],
                "prompt": entry.record["prompt"], **caption,
                "kept": decision.kept, "reason": decision.reason,
                "distance": round(decision.distance, 6) if decision.distance is not None else None,
                "figures": [[round(value, 2) for value in figure.box] + [figure.best] for figure in drawing.figures],
                "hash": f"{decision.image_hash:016x}"})
        kept = sum(image["kept"] for image in images)
        info(f"synth: {name}: kept {kept} of {len(images)} drawings")
        found[name] = {"key": key, "epoch_file": run.file.path.name, "sshs_model_hash": run.file.model_hash,
                       "epoch": run.file.epoch, "drawn": len(images), "kept": kept, "images": images}
    return found
