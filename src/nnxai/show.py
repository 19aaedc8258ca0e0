"""``python -m nnxai show FILE``: an explanation record as a person reads it.

Rules print as IF-THEN text, local rules and counterfactuals per explained input, examples as the training
positions beside each test input (MMD-critic's [147] prototypes and criticisms first, with their classes and
witness values), unit concepts and concept scores as tables, unit images as the units they show, surrogate
models as their architecture, attribution maps as their most relevant features.  The header says which method
made the record, on which data set and model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnxai.explanations import (AttributionMap, ConceptScores, Examples, Explanation, LocalRules, RuleSet,
                                SurrogateModel, UnitConcepts, UnitImages, load_explanation)


def header(record: Explanation, path: Path) -> str:
    meta = record.meta
    where = "/".join(str(meta[k]) for k in ("dataset", "model") if k in meta) or "?"
    return f"{path}: {record.kind} explanation by {meta.get('method', '?')} of {where}"


def render(record: Explanation, limit: int = 10) -> str:
    """The body of :func:`show` for one record; ``limit``: at most this many inputs, units or tests."""
    if isinstance(record, RuleSet):
        lines = [f"{len(record.rules)} rules over {record.feature_space} ({len(record.feature_names)} features)"]
        if record.tree:
            lines.append(f"tree: depth {record.tree.get('depth')}, {record.tree.get('n_leaves')} leaves")
        if record.inference:
            lines.append(f"inference: {record.inference['type']}")
        return "\n".join(lines + [record.text])
    if isinstance(record, LocalRules):
        lines = record.to_text().splitlines()
        more = len(lines) - limit
        return "\n".join(lines[:limit] + ([f"... {more} more inputs"] if more > 0 else []))
    if isinstance(record, Examples):
        lines = [f"test input {i} (class {t}): training examples {list(e)[:8]} scores "
                 f"{[round(float(s), 4) for s in list(s_)[:8]]}"
                 for i, t, e, s_ in zip(record.indices, record.targets, record.examples, record.scores)]
        more = len(lines) - limit
        return "\n".join(_selected_examples(record.extra, limit) + lines[:limit]
                         + ([f"... {more} more inputs"] if more > 0 else []))
    if isinstance(record, UnitConcepts):
        units = sorted(record.units, key=lambda u: -float(u.get("score", 0.0)))
        lines = [f"{u.get('layer')}:{u.get('unit')}  {u.get('concept')}  score {float(u.get('score', 0.0)):.3f}"
                 for u in units[:limit]]
        return "\n".join([f"{len(record.units)} units labelled with {len(record.concepts)} concepts"] + lines)
    if isinstance(record, UnitImages):
        lines = [f"{len(record.units)} images of shape {tuple(record.images.shape[1:])}"]
        for unit in record.units[:limit]:
            rest = ", ".join(f"{k} {_short(v)}" for k, v in unit.items() if k not in ("layer", "unit"))
            lines.append(f"{unit['layer']}:{unit['unit']}" + (f"  {rest}" if rest else ""))
        more = len(record.units) - limit
        return "\n".join(lines + ([f"... {more} more"] if more > 0 else []))
    if isinstance(record, SurrogateModel):
        n_params = sum(int(np.asarray(v).size) for v in record.parameters.values())
        lines = [f"surrogate {record.architecture}: {n_params} parameters in {len(record.parameters)} arrays",
                 f"logits on {len(record.indices)} test inputs"]
        return "\n".join(lines)
    if isinstance(record, ConceptScores):
        lines = [f"{t['concept']} -> {record.class_names[t['class']]}: TCAV {t['tcav_score']:.3f}, "
                 f"p {t['p_value_corrected']:.3g}{' (significant)' if t['significant'] else ''}"
                 for t in record.tests[:limit]]
        return "\n".join([f"layer {record.layer}, {len(record.concepts)} concepts, alpha {record.alpha}"] + lines)
    if isinstance(record, AttributionMap):
        maps = record.attributions.reshape(len(record.attributions), -1)
        lines = [f"{len(maps)} maps of shape {record.attributions.shape[1:]}"]
        for i, t, row in list(zip(record.indices, record.targets, maps))[:limit]:
            top = np.argsort(-np.abs(row))[:5]
            lines.append(f"test input {i} (class {t}): most relevant features "
                         + ", ".join(f"{j} ({row[j]:+.3g})" for j in top))
        return "\n".join(lines)
    raise ValueError(f"cannot show a {type(record).__name__}")


def _selected_examples(extra: dict, limit: int) -> list[str]:
    """MMD-critic's selection [147]: its prototypes and its criticisms, each as training positions with their
    classes and witness values (``extra["prototypes"]``, ``extra["criticisms"]``; nothing for other records)."""
    lines = []
    for kind in ("prototypes", "criticisms"):
        positions = list(extra.get(kind) or [])
        if not positions:
            continue
        singular = kind[:-1]
        classes, witness = list(extra.get(f"{singular}_classes") or []), list(extra.get(f"{singular}_witness") or [])
        shown = [_selected(p, classes[j] if j < len(classes) else None, witness[j] if j < len(witness) else None)
                 for j, p in enumerate(positions[:limit])]
        more = len(positions) - limit
        lines.append(f"{len(positions)} {kind} (training positions): " + ", ".join(shown)
                     + (f", ... {more} more" if more > 0 else ""))
    return lines


def _selected(position, cls, witness) -> str:
    details = [f"class {cls}"] if cls is not None else []
    details += [f"witness {float(witness):+.3g}"] if witness is not None else []
    return f"{position} ({', '.join(details)})" if details else str(position)


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else f"{value!r:.40}"


def show(path: str | Path, limit: int = 10) -> str:
    """Load an explanation file (checked as the pipeline loads it) and render it."""
    path = Path(path)
    record = load_explanation(path)
    return header(record, path) + "\n" + render(record, limit)
