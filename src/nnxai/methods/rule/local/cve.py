"""Counterfactual visual explanations (CVE), Goyal, Wu, Ernst, Batra, Parikh & Lee (ICML 2019; survey ref. [78]).

For a *query* image ``I`` that the network classifies as ``c`` and a *distractor* image ``I'`` that it
classifies as ``c'``, CVE asks which regions of ``I`` must be replaced by regions of ``I'`` for the network to
answer ``c'`` instead of ``c``.  The network is split at its last convolutional layer, ``f(I)`` (``h x w``
cells of ``d`` features) and the head ``g``; a counterfactual is (the paper's Eq. 1)

    f* = (1 - a) o f(I) + a o P f(I'),

with a gating vector ``a in {0, 1}^{hw}`` (which query cells are replaced) and a matrix ``P`` whose rows pick the
distractor cell that replaces each (a permutation: no distractor cell is used twice), and the
*minimum-edit* problem (Eq. 2) ``min ||a||_1  s.t.  c' = argmax g(f*)``.

The paper solves it by **greedy sequential exhaustive search** (Sec. 3.1): at every step, every pair
(query cell ``i`` not yet replaced, distractor cell ``j`` not yet used) is tried on top of the edits so far,
the pair maximising ``log g_{c'}(f*)`` (the log-softmax of class ``c'``) is kept, and the search stops as soon
as the network's decision is ``c'`` (the Goyal et al. baseline of Vandenhende et al.'s code,
facebookresearch/visual-counterfactuals, ``compute_counterfactual`` with ``lambd = 0``, does the same, and
also removes used query and distractor cells).  Every step scores all ``(hw)^2`` pairs.

Here the head is :class:`~nnxai.models.networks.ConvNet`'s: global average pooling and one linear layer,
``g(F) = W mean_i F_i + b``, so the logits after an edit are the current logits plus ``W (F'_j - F_i) / hw``
and one step is one ``(hw, hw, K)`` array (exact, checked against the network's own head at the end and in
the tests).  With a GAP head, replacing every query cell by a permutation of the distractor's cells gives
the distractor's logits, so the search ends within ``hw`` edits whenever a distractor exists.

Choices the paper leaves open for our setting: the counterfactual class ``c'`` of a query is the class the
network scores second highest on it (the alternative the network itself entertains: "why ``c`` and not
``c'``"); the distractor is a test input that the network classifies as ``c'``, drawn at random with the run's
seed (the paper picks random distractor images of class ``c'``).  A query for which no test input is
classified ``c'`` gets no counterfactual (``flipped`` false, no edits).

Each explained input gets an entry with ``edits`` (``[[query_row, query_col], [distractor_row, distractor_col]]``
in the order found), ``distractor`` (its test index), ``query_class``, ``distractor_class``, ``prediction`` (the
network's class of ``f*``), ``flipped`` and ``text`` ("replace cells (1,2)<-(0,3) of the query with the
distractor's: class c -> c'").  Judged by ``edits_to_flip`` and ``flip_rate``
(:mod:`nnxai.metrics.counterfactual_edits`).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from nnxai.explanations import LocalRules
from nnxai.methods.base import ExplainContext, LocalRuleMethod
from nnxai.registry import register

#: Images per forward pass of the feature extractor.
BATCH = 100


@contextmanager
def _eval_mode(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def head(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The network above its last conv layer: ``classifier(GAP(features))`` (:class:`ConvNet`)."""
    return model.classifier(torch.flatten(model.gap(features), 1))


@torch.no_grad()
def feature_maps(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``f(I)`` of every image of ``x``: ``(N, d, h, w)``, float64 on the CPU, computed in eval mode."""
    device = next(model.parameters()).device
    with _eval_mode(model):
        out = [model.feature_maps(x[i:i + BATCH].to(device)).double().cpu() for i in range(0, len(x), BATCH)]
    return torch.cat(out) if out else torch.zeros(0)


def check_head(model: nn.Module, x: torch.Tensor) -> None:
    """Raise unless ``model(x) = classifier(GAP(feature_maps(x)))``: the decomposition CVE edits."""
    device = next(model.parameters()).device
    with torch.no_grad(), _eval_mode(model):
        x = x.to(device)
        direct, split = model(x).double(), head(model, model.feature_maps(x)).double()
    if not torch.allclose(direct, split, rtol=1e-4, atol=1e-4):
        raise ValueError(f"cve edits the last conv layer's cells and needs model(x) = classifier(gap(feature_maps(x))); "
                         f"{type(model).__name__} differs by {float((direct - split).abs().max()):.3g}")


def greedy_edits(query: np.ndarray, distractor: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                 target: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The paper's greedy sequential exhaustive search on a GAP-linear head.

    Parameters
    ----------
    query, distractor : numpy.ndarray
        ``(hw, d)`` cell features of the query and the distractor (row-major cells).
    weight, bias : numpy.ndarray
        The linear layer: ``(K, d)`` and ``(K,)``.
    target : int
        The counterfactual class ``c'``.

    Returns
    -------
    edits : list of (int, int)
        ``(query cell, distractor cell)`` pairs in the order chosen; empty when the query is already ``c'``.
    logits : numpy.ndarray
        ``(K,)`` logits of the edited features.
    """
    hw = len(query)
    a, b = query @ weight.T / hw, distractor @ weight.T / hw       # each cell's share of the pooled logits
    logits = a.sum(axis=0) + bias
    free_query, free_distractor = np.ones(hw, dtype=bool), np.ones(hw, dtype=bool)
    edits: list[tuple[int, int]] = []
    while np.argmax(logits) != target and free_query.any():
        candidates = logits[None, None, :] - a[:, None, :] + b[None, :, :]          # (query cell, distractor cell, K)
        top = candidates.max(axis=2, keepdims=True)
        log_p = candidates[..., target] - (top[..., 0] + np.log(np.exp(candidates - top).sum(axis=2)))
        log_p[~free_query, :] = -np.inf
        log_p[:, ~free_distractor] = -np.inf
        i, j = np.unravel_index(int(np.argmax(log_p)), log_p.shape)
        edits.append((int(i), int(j)))
        logits = candidates[i, j]
        free_query[i], free_distractor[j] = False, False
    return edits, logits


def apply_edits(query: torch.Tensor, distractor: torch.Tensor, edits: list) -> torch.Tensor:
    """``f*``: the query's ``(d, h, w)`` features with the cells of ``edits`` (``[[qr, qc], [dr, dc]]``) replaced."""
    out = query.clone()
    for (qr, qc), (dr, dc) in edits:
        out[:, qr, qc] = distractor[:, dr, dc]
    return out


def cell_text(cell) -> str:
    return f"({int(cell[0])},{int(cell[1])})"


@register("cve")
class CVE(LocalRuleMethod):
    """Goyal et al. [78]: the fewest feature-cell replacements from a distractor image that make the network
    answer the distractor's class, by greedy sequential exhaustive search."""

    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})
    needs_gap_head = True
    needs_linear_head = True
    parameters = {**LocalRuleMethod.parameters}

    def explain_inputs(self, model: nn.Module, ctx: ExplainContext, indices: np.ndarray) -> LocalRules:
        x_test = ctx.test.x
        check_head(model, x_test[indices[:2]])
        features = feature_maps(model, x_test)
        with torch.no_grad():
            logits = head(model, features.to(next(model.parameters()).dtype).to(
                next(model.parameters()).device)).double().cpu().numpy()
        predicted = logits.argmax(axis=1)
        weight = model.classifier.weight.detach().double().cpu().numpy()
        bias = model.classifier.bias.detach().double().cpu().numpy()
        n_classes = weight.shape[0]
        class_names = list(ctx.test.meta.get("class_names") or [str(c) for c in range(n_classes)])
        _, d, h, w = features.shape
        cells = features.permute(0, 2, 3, 1).reshape(len(features), h * w, d).numpy()
        rng = np.random.default_rng(ctx.seed)
        entries, targets = [], []
        for i in (int(k) for k in indices):
            c = int(predicted[i])
            order = np.argsort(-logits[i], kind="stable")
            target = int(order[1]) if n_classes > 1 else c
            pool = np.flatnonzero((predicted == target) & (np.arange(len(predicted)) != i))
            targets.append(c)
            if target == c or not len(pool):
                entries.append(self._no_distractor(c, target, class_names))
                continue
            j = int(rng.choice(pool))
            edits, _ = greedy_edits(cells[i], cells[j], weight, bias, target)
            pairs = [[list(divmod(q, w)), list(divmod(r, w))] for q, r in edits]
            with torch.no_grad():
                edited = apply_edits(features[i], features[j], pairs)[None]
                param = next(model.parameters())
                final = int(head(model, edited.to(param.dtype).to(param.device)).argmax(1).item())
            entries.append(self._entry(c, target, j, pairs, final, class_names))
        names = [f"({r},{col})" for r in range(h) for col in range(w)]
        return LocalRules(indices=[int(k) for k in indices], targets=targets, explanations=entries,
                          feature_names=names, class_names=class_names, feature_space="cells",
                          extra={"grid": [int(h), int(w)]})

    @staticmethod
    def _entry(c: int, target: int, distractor: int, pairs: list, final: int, class_names: list) -> dict:
        flipped = final == target
        swaps = ", ".join(f"{cell_text(q)}<-{cell_text(r)}" for q, r in pairs)
        change = f"class {class_names[c]} -> {class_names[final]}"
        text = (f"replace cells {swaps} of the query with the distractor's (test input {distractor}): {change}"
                if flipped else f"no counterfactual: replacing every cell ({swaps}) leaves {change}")
        return {"text": text, "conditions": [], "edits": pairs, "distractor": int(distractor), "query_class": c,
                "distractor_class": int(target), "prediction": int(final), "flipped": bool(flipped),
                "n_edits": len(pairs)}

    @staticmethod
    def _no_distractor(c: int, target: int, class_names: list) -> dict:
        return {"text": f"no counterfactual: no test input is classified {class_names[target]}", "conditions": [],
                "edits": [], "distractor": None, "query_class": c, "distractor_class": int(target),
                "prediction": c, "flipped": False, "n_edits": 0}
