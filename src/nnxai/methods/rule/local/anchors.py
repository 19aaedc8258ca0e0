"""Anchors, Ribeiro, Singh & Guestrin [65]: high-precision if-then rules that "anchor" a prediction.

An anchor of ``x`` for the classifier ``f`` is a set ``A`` of predicates that ``x`` satisfies such that

    prec(A) = E_{D(z|A)}[1[f(z) = f(x)]] ≥ τ      ([65] Eq. 1),

``D(z|A)`` the perturbation distribution conditioned on ``A`` holding.  Precision is only estimated from
draws, so [65] asks ``P(prec(A) ≥ τ) ≥ 1 − δ`` (Eq. 2) and, among the anchors, the one of largest coverage
``cov(A) = E_{D(z)}[A(z)]`` (Eq. 3-4).  The search is the paper's beam search (Alg. 2, candidates by Alg. 3)
whose best-candidate step is the KL-LUCB bandit (Alg. 1's ``BestCand``, ``B``-best for a beam of width
``B``): :mod:`._kl_lucb`.  The predicates and ``D`` per modality: :mod:`._anchor_space` (quartile bins of
continuous columns, MONK's one-hot columns as they are, train rows conditioned on the anchor; SLIC
superpixels kept or filled for images).

Each explained test input gets one entry: ``conditions`` (one 1-of-1 condition per predicate, over the
inputs or the input's ``superpixels``), ``precision`` (the mean of the anchor's draws during the search),
``precision_bounds`` (its KL bounds at level ``log(1/δ)``), ``coverage``, ``meets_threshold`` (false when
the draw budget or ``max_size`` ran out before an anchor was found: the entry then holds the most
precise candidate checked), ``n_samples`` (draws spent) and ``text``, e.g.
``IF a5=1 THEN yes (precision 1.00, coverage 0.25)``.

Choices not fixed by [65]: the draw budget ``max_samples`` per input (the image jobs must take seconds),
the constant ``fill`` of absent superpixels (see :mod:`._anchor_space`), and a generator per input seeded
by the fitted seed and the input's test position, so explanations do not depend on which others are
explained.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nnxai.explanations import LocalRules
from nnxai.methods.attribution._reference import reference_per_channel
from nnxai.methods.base import ExplainContext, LocalRuleMethod
from nnxai.methods.rule.local._anchor_space import TableModel, TableSpace, agreement, image_space
from nnxai.methods.rule.local._kl_lucb import anchor_beam
from nnxai.ops.feature_space import predict_classes
from nnxai.ops.maps import REFERENCES, constant_reference
from nnxai.params import Choice, Float, Int
from nnxai.registry import register


def predicate_text(lit: dict, names: list[str], binary: bool) -> str:
    """A table's predicate as a person reads it: ``a5=1`` / ``a5!=1`` (or ``x3=1`` / ``x3=0``) for a 0/1 column,
    ``x3 > 0.12`` for a quantile edge of a continuous one."""
    name = names[lit["feature"]]
    if binary:
        if "=" in name:
            return name if lit["op"] == ">" else name.replace("=", "!=", 1)
        return f"{name}={1 if lit['op'] == '>' else 0}"
    return f"{name} {lit['op']} {lit['threshold']:.3g}"


@register("anchors")
class Anchors(LocalRuleMethod):
    """Anchors [65]: per input, the beam-searched anchor of largest coverage with ``prec_lb > τ``."""

    model_agnostic = True     # queries the model's classes only
    parameters = {
        **LocalRuleMethod.parameters,
        "tau": Float("precision threshold τ of an anchor ([65] Eq. 2)", low=0, high=1, low_open=True,
                     high_open=True),
        "delta": Float("confidence δ: P(prec(A) >= τ) >= 1 − δ ([65] Eq. 2), and KL-LUCB's", low=0, high=1,
                       low_open=True, high_open=True),
        "epsilon": Float("tolerance ε of KL-LUCB's best-arm identification and of a precision check", low=0,
                         high=1, low_open=True),
        "beam_width": Int("anchors B kept per size by the beam search ([65] Alg. 2; 1: the greedy Alg. 1)", low=1),
        "batch_size": Int("draws from D(z|A) per pull of an arm", low=1),
        "max_size": Int("most predicates in an anchor (rounds of the beam search)", low=1),
        "max_samples": Int("budget of draws from D per explained input (not in [65]: bounds the time of a job)",
                           low=1),
        "n_bins": Int("quantile bins of a continuous column (4: the quartiles of [65]); tables only", low=2),
        "fill": Choice("value of an absent superpixel: zeros, or the per-channel train mean; images only",
                       REFERENCES),
        "n_segments": Int("number of SLIC superpixels aimed at, the predicates of an image", low=1),
        "compactness": Float("SLIC's balance of colour and space (images only)", low=0, low_open=True),
    }

    def _fit(self, model: nn.Module, train) -> None:
        x = train.x
        if x.dim() == 4:
            per_channel = reference_per_channel(self.params["fill"], x)
            self.reference_ = constant_reference(per_channel, tuple(x.shape[1:]))
            self.table_ = None
        else:
            names = list(train.meta.get("feature_names") or [f"x{j}" for j in range(x.shape[1])])
            self.table_ = TableModel(x.reshape(len(x), -1).numpy(), names, int(self.params["n_bins"]))
            self.reference_ = None

    def input_space(self, x: torch.Tensor):
        """The predicates of ``x`` and ``D(z|A)`` around it (:mod:`._anchor_space`)."""
        if self.table_ is not None:
            return TableSpace(self.table_, x.reshape(-1).detach().cpu().numpy().astype(np.float64), tuple(x.shape))
        return image_space(x.detach(), self.params["n_segments"], float(self.params["compactness"]),
                           self.reference_.to(x.device))

    def explain_one(self, model: nn.Module, x: torch.Tensor, target: int, rng: np.random.Generator):
        """``(space, result)``: the anchor of ``x`` for class ``target`` (:func:`._kl_lucb.anchor_beam`)."""
        space = self.input_space(x)
        predicates = space.predicates
        p = self.params

        def sample(anchors, n):
            hits = agreement(model, space, [[predicates[i] for i in a] for a in anchors], n, target, rng)
            return hits.sum(axis=1)

        result = anchor_beam(sample, lambda a: space.coverage([predicates[i] for i in a]), len(predicates),
                             space.normalise,
                             tau=float(p["tau"]), delta=float(p["delta"]), epsilon=float(p["epsilon"]),
                             beam_width=p["beam_width"], batch=p["batch_size"], max_size=p["max_size"],
                             max_samples=p["max_samples"])
        return space, result

    def explain_inputs(self, model: nn.Module, ctx: ExplainContext, indices: np.ndarray) -> LocalRules:
        self.check_fitted(model)
        inputs = ctx.test.x[indices].to(ctx.device)
        targets = predict_classes(model, inputs)
        n_classes = int(ctx.info.n_classes)
        class_names = list(ctx.train.meta.get("class_names") or [str(c) for c in range(n_classes)])
        entries, widest = [], 0
        for i, x, target in zip(indices, inputs, targets):
            rng = np.random.default_rng([self.seed, int(i)])
            space, result = self.explain_one(model, x, int(target), rng)
            widest = max(widest, len(space.predicates))
            entries.append(self._entry(space, result, class_names[int(target)]))
        if self.table_ is not None:
            names, kind = self.table_.names, "inputs"
        else:
            names, kind = [f"superpixel {k}" for k in range(widest)], "superpixels"
        for entry in entries:
            entry["text"] = self._text(entry, names)
        extra = ({"predicates": "quantile bins and 0/1 columns of the train split", "n_bins": self.params["n_bins"]}
                 if kind == "inputs" else {"predicates": "SLIC superpixels", "n_segments": self.params["n_segments"]})
        return LocalRules([int(i) for i in indices], [int(t) for t in targets], entries, names, class_names, kind,
                          extra)

    def _entry(self, space, result, class_name: str) -> dict:
        predicates = space.predicates
        lits = [predicates[i] for i in result.anchor]
        entry = {"conditions": [{"m": 1, "literals": [lit]} for lit in lits], "prediction": class_name,
                 "precision": float(result.precision), "precision_bounds": [float(result.lower), float(result.upper)],
                 "coverage": float(result.coverage), "meets_threshold": bool(result.meets_threshold),
                 "n_samples": int(result.n_samples), "text": ""}
        if self.table_ is None:
            entry["n_superpixels"] = space.n_superpixels
        return entry

    def _text(self, entry: dict, names: list[str]) -> str:
        lits = [c["literals"][0] for c in entry["conditions"]]
        binary = [self.table_ is None or bool(self.table_.binary[lit["feature"]]) for lit in lits]
        if self.table_ is None:
            parts = [names[lit["feature"]] for lit in lits]
        else:
            parts = [predicate_text(lit, names, b) for lit, b in zip(lits, binary)]
        text = (f"IF {' AND '.join(parts) or 'true'} THEN {entry['prediction']} "
                f"(precision {entry['precision']:.2f}, coverage {entry['coverage']:.2f})")
        if not entry["meets_threshold"]:
            text += f" [no anchor with precision lower bound above tau={self.params['tau']} found]"
        return text
