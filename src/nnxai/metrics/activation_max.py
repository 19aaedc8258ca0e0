"""Metrics of activation maximisation (survey Sec. III-B-1, [71], [93]-[98]), on a
:class:`~nnxai.explanations.UnitImages` record of ``activation_max``.  Each is a mean over the synthesised
images (:class:`~nnxai.intervals.PerInput`, with a bootstrap interval), with one sub-key per regulariser
(``<metric>.<regulariser>``).  The "real inputs" are the test split.

* ``activation_reached``: how far the image drives its unit, recomputed on the network:
  ``(a(x*) - mean_real a) / (max_real a - mean_real a)``, ``a`` the unit's activation (a channel: the spatial
  mean of its layer's output; a class: its logit).  0: as much as an average real input; 1: as much as the
  strongest real input; above 1: beyond every real input.  (A unit constant on the real inputs has no scale:
  left out.)  Also per layer (``.logits``, ``.<layer>``) and ``.above_real_max``, the fraction of images above
  1.  On a data set with a concept table (``shapes``), whether a unit's visualisation shows its concept, by
  the unit's responses to *real* inputs labelled by the data generator: ``.concept_auc`` is the AUC with
  which the unit's activation separates the real test images that have the concept the image was read as
  showing (``unit["concept"]``, the method's independent concept probes) from those that do not (0.5:
  unrelated; 1: the unit fires on that concept only), ``.concept_match`` the fraction of units whose named
  concept is the one with the highest such AUC.
* ``class_confidence``: the network's softmax probability of the class on the image of that class (Simonyan
  et al. [71] maximise the score before the softmax: a high score need not mean a confident class).  On a data
  set with a planted labelling rule over its concept table (``shapes``: positive iff stripes and not a
  triangle), ``.rule`` is the fraction of class images whose probe readings (the concept table row they are
  read as: probabilities of the binary concepts, the train mean of the continuous distractors) the data
  generator's own rule assigns to the visualised class: the image shows the class's concepts.
* ``tv_norm``: naturalness as the classic (isotropic, β = 1) total variation per element of each image,
  ``mean_{c,i,j} sqrt((x_{c,i,j+1} - x_{c,i,j})² + (x_{c,i+1,j} - x_{c,i,j})²)`` over the input range
  (:func:`~nnxai.methods.hidden_semantics._activation_max_regularisers.total_variation`); lower is smoother;
  ``.real`` is the same over the real test inputs, the level of a natural image.
"""

from __future__ import annotations

import numpy as np
import torch

from nnxai.explanations import UnitImages
from nnxai.intervals import PerInput
from nnxai.metrics.base import Metric, register_metric


def _units(record) -> list[dict]:
    if not isinstance(record, UnitImages):
        raise ValueError(f"activation-maximisation metrics score a UnitImages record, got {type(record).__name__}")
    if not record.units or any("regulariser" not in u for u in record.units):
        raise ValueError("the UnitImages record has no units or units without a 'regulariser' (not written by "
                         "activation_max)")
    return record.units


def _targets(units):
    from nnxai.methods.hidden_semantics._activation_max_engine import Target

    return [Target(str(u["layer"]), int(u["unit"])) for u in units]


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _per_regulariser(metric_id: str, units: list[dict], values: np.ndarray, where=None) -> dict:
    """``{metric.<regulariser>: PerInput}`` over the images selected by ``where`` (a bool mask)."""
    where = np.ones(len(units), dtype=bool) if where is None else where
    out = {}
    for name in dict.fromkeys(u["regulariser"] for u in units):
        sel = where & np.array([u["regulariser"] == name for u in units])
        if sel.any():
            out[f"{metric_id}.{name}"] = PerInput(values[sel])
    return out


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the ``positive`` rows (Mann-Whitney, ties count half); NaN
    when one class is empty."""
    from scipy.stats import rankdata

    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@register_metric
class ActivationReached(Metric):
    id = "activation_reached"
    higher_is_better = True
    kinds = frozenset({"hidden_semantics"})
    description = ("activation of each synthesised image's unit relative to real inputs: (a - mean) / (max - "
                   "mean) over the test split; per regulariser and layer; on shapes the AUC of the unit for the "
                   "concept its image shows")

    def __call__(self, record, ctx, method):
        from nnxai.methods.hidden_semantics._activation_max_engine import layer_statistics, unit_values

        units = _units(record)
        model, targets = ctx.model, _targets(units)
        device = _device(model)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                _, reached = unit_values(model, torch.as_tensor(record.images).to(device), targets)
                real = layer_statistics(model, ctx.test.x.to(device))
        finally:
            model.train(was_training)
        reached = reached.double().cpu().numpy()
        real_post = {name: s["post"].double().cpu().numpy() for name, s in real.items()}
        ratio = np.full(len(units), np.nan)
        for i, t in enumerate(targets):
            values = real_post[t.layer][:, t.unit]
            spread = values.max() - values.mean()
            if spread > 0:
                ratio[i] = (reached[i] - values.mean()) / spread
        out = {self.id: PerInput(ratio), **_per_regulariser(self.id, units, ratio)}
        for layer in dict.fromkeys(t.layer for t in targets):
            out[f"{self.id}.{layer}"] = PerInput(ratio[[t.layer == layer for t in targets]])
        out[f"{self.id}.above_real_max"] = PerInput(np.where(np.isfinite(ratio), ratio >= 1.0, np.nan))
        out.update(self._concepts(record, units, targets, real_post, ctx))
        return out

    def _concepts(self, record, units, targets, real_post, ctx) -> dict:
        """``.concept_auc`` / ``.concept_match`` where the units name concepts and the test split has a table."""
        from nnxai.methods.hidden_semantics._activation_max_probe import concept_truth

        table = getattr(ctx.test, "concepts", None)
        columns = list(getattr(ctx.info, "concepts", ()) or ())
        named = np.array([("concept" in u and u["layer"] != "logits") for u in units])
        if table is None or not columns or not named.any():
            return {}
        truth = {c: concept_truth(table, columns, c) for c in record.concepts}
        truth = {c: v for c, v in truth.items() if v is not None}
        aucs = np.full(len(units), np.nan)
        match = np.full(len(units), np.nan)
        cache: dict[tuple, dict] = {}
        for i, (u, t) in enumerate(zip(units, targets)):
            if not named[i] or u["concept"] not in truth:
                continue
            key = (t.layer, t.unit)
            if key not in cache:
                scores = real_post[t.layer][:, t.unit]
                cache[key] = {c: auc(scores, v) for c, v in truth.items()}
            per_concept = cache[key]
            aucs[i] = per_concept[u["concept"]]
            finite = {c: a for c, a in per_concept.items() if np.isfinite(a)}
            if finite:
                match[i] = float(u["concept"] == max(finite, key=lambda c: (finite[c], c)))
        sel = np.isfinite(aucs)
        if not sel.any():
            return {}
        out = {f"{self.id}.concept_auc": PerInput(aucs[sel]), f"{self.id}.concept_match": PerInput(match[sel])}
        for name, values in (("concept_auc", aucs), ("concept_match", match)):
            out.update({f"{self.id}.{name}.{k.split('.', 1)[1]}": v
                        for k, v in _per_regulariser(self.id, units, values, sel).items()})
        return out


@register_metric
class ClassConfidence(Metric):
    id = "class_confidence"
    higher_is_better = True
    kinds = frozenset({"hidden_semantics"})
    description = ("the network's softmax probability of the class on its synthesised image, per regulariser; on "
                   "shapes the fraction of class images whose probed concepts the data's own rule assigns to the class")

    def __call__(self, record, ctx, method):
        units = _units(record)
        rows = np.array([u["layer"] == "logits" for u in units])
        if not rows.any():
            raise ValueError("the record holds no class visualisation (layer 'logits')")
        model = ctx.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                images = torch.as_tensor(record.images[rows]).to(_device(model))
                probs = torch.softmax(model(images).double(), dim=1).cpu().numpy()
        finally:
            model.train(was_training)
        classes = np.array([int(u["unit"]) for u in units])[rows]
        confidence = np.full(len(units), np.nan)
        confidence[rows] = probs[np.arange(len(classes)), classes]
        out = {self.id: PerInput(confidence[rows]), **_per_regulariser(self.id, units, confidence, rows)}
        out.update(self._rule(units, rows, ctx))
        return out

    def _rule(self, units, rows, ctx) -> dict:
        rule = getattr(ctx.info, "planted_rule", None)
        columns = [str(c) for c in (getattr(ctx.info, "concepts", ()) or ())]
        table = getattr(ctx.train, "concepts", None)
        if rule is None or rule.feature_space != "concepts" or table is None or not columns:
            return {}
        if not all("probe" in units[i] for i in np.flatnonzero(rows)):
            return {}
        fill = np.asarray(table, dtype=np.float64).mean(0)
        shows = np.full(len(units), np.nan)
        for i in np.flatnonzero(rows):
            reading = units[i]["probe"]
            row = np.array([reading.get(c, fill[j]) for j, c in enumerate(columns)], dtype=np.float64)
            shows[i] = float(int(rule.classify(row[None, :])[0]) == int(units[i]["unit"]))
        return {f"{self.id}.rule": PerInput(shows[rows]),
                **{f"{self.id}.rule.{k.split('.', 1)[1]}": v
                   for k, v in _per_regulariser(self.id, units, shows, rows).items()}}


@register_metric
class TVNorm(Metric):
    id = "tv_norm"
    higher_is_better = False
    kinds = frozenset({"hidden_semantics"})
    description = ("isotropic total variation per element of each synthesised image over the input range (lower: "
                   "smoother; .real: the real test inputs' level)")

    def __call__(self, record, ctx, method):
        from nnxai.methods.hidden_semantics._activation_max_regularisers import total_variation

        units = _units(record)
        low, high = record.meta.get("input_range", [0.0, 1.0])
        span = float(high) - float(low) or 1.0
        tv = total_variation(torch.as_tensor(record.images, dtype=torch.float64), 1.0).numpy() / span
        real = torch.cat([total_variation(b.double(), 1.0) for b in ctx.test.x.split(512)]).numpy() / span
        return {self.id: PerInput(tv), **_per_regulariser(self.id, units, tv), f"{self.id}.real": PerInput(real)}
