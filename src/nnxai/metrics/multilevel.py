"""Fidelity of every level of a MAME explanation tree [68] (METHODS.md: MAME is judged by "fidelity per
level").  Called by the ``fidelity`` metric (:mod:`nnxai.metrics.rules`) for attribution records; no
metric is registered here.

A level's cluster explanation ``θ_c`` is a linear model over LIME's interpretable features of the input's
feature groups (``s_g = 1``: group ``g`` kept, ``0``: at the reference ``x_ref`` the method recorded in
``meta["baseline"]``; see :mod:`nnxai.methods.attribution.aggregation.mame`), with one intercept ``b_c`` per
cluster:

    f_t(x_ref + s ⊙ (x_i − x_ref)) ≈ b_c + Σ_g s_g θ_c,g        for the members ``i`` of cluster ``c``,

``f_t`` the score of the explained class the tree models (``meta["mame"]["score"]``: the softmax
probability, as MAME's LIME losses fit it, or the logit).  The queries are the members' own inputs
(``s = 1``) and
``n_queries`` perturbed copies: member ``q mod N`` with every group kept with probability ½ (seeded by
``ctx.seed``).  ``b_c`` is the least-squares intercept over the cluster's queries and the level's fidelity
the coefficient of determination ``R² = 1 − Σ (f − f̂)² / Σ (f − mean f)²`` over all queries.  Finer levels
have more parameters; on data with a planted hierarchy fidelity falls from the leaves to the root.
"""

from __future__ import annotations

import numpy as np
import torch

from nnxai.ops.groups import feature_groups
from nnxai.metrics.attribution import FORWARD_BATCH, class_scores, explained_inputs, reference_from_meta

#: The class scores a tree may model (``meta["mame"]["score"]``).
SCORES = ("probability", "logit")


def mame_tree(record) -> dict:
    tree = record.meta.get("mame")
    if not tree:
        raise ValueError(f"fidelity of an attribution record needs a MAME tree (meta['mame']); the record of "
                         f"{record.meta.get('method', '?')!r} has none")
    return tree


def query_design(n_inputs: int, n_groups: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(members, kept)``: the member queried and its kept groups (bool ``(Q, n_groups)``), the members'
    own inputs first."""
    rng = np.random.default_rng(seed)
    members = np.concatenate([np.arange(n_inputs), np.arange(n_queries) % n_inputs])
    kept = np.concatenate([np.ones((n_inputs, n_groups), dtype=bool), rng.random((n_queries, n_groups)) < 0.5])
    return members, kept


@torch.no_grad()
def query_outputs(model, inputs: torch.Tensor, targets: torch.Tensor, index: np.ndarray, members: np.ndarray,
                  kept: np.ndarray, reference: torch.Tensor, score: str) -> np.ndarray:
    """``f_t(x_ref + s ⊙ (x_i − x_ref))`` for every query (``score``: the probability or the logit), batched."""
    group = torch.as_tensor(index, dtype=torch.long, device=inputs.device)
    out = []
    for start in range(0, len(members), FORWARD_BATCH):
        who = torch.as_tensor(members[start:start + FORWARD_BATCH], dtype=torch.long, device=inputs.device)
        mask = torch.as_tensor(kept[start:start + FORWARD_BATCH], device=inputs.device)[:, group]
        composed = reference + mask.to(inputs.dtype) * (inputs[who] - reference)
        out.append(class_scores(model, composed, targets[who], softmax=score == "probability"))
    return torch.cat(out).cpu().numpy()


def level_r2(outputs: np.ndarray, members: np.ndarray, kept: np.ndarray, labels: np.ndarray,
             coefficients: np.ndarray) -> float:
    """R² of the level's linear models, with their least-squares cluster intercepts, on the queries."""
    cluster = labels[members]
    linear = (kept * coefficients[cluster]).sum(1)
    residual = outputs - linear
    k = int(labels.max()) + 1
    intercept = np.bincount(cluster, weights=residual, minlength=k) / np.maximum(np.bincount(cluster, minlength=k), 1)
    error = ((residual - intercept[cluster]) ** 2).sum()
    total = ((outputs - outputs.mean()) ** 2).sum()
    return float(1.0 - error / total) if total > 0 else float("nan")


def level_fidelity(record, ctx, n_queries: int) -> dict[str, float]:
    """``{"fidelity": R² at the record's level, "fidelity.level<k>": R² of level k (0: leaves)}``."""
    tree = mame_tree(record)
    inputs, targets, _ = explained_inputs(record, ctx)
    index, n_groups = feature_groups(tuple(inputs.shape[1:]), tree["patch_size"])
    if n_groups != tree["n_groups"]:
        raise ValueError(f"the MAME tree has {tree['n_groups']} feature groups, the inputs {tuple(inputs.shape[1:])} "
                         f"with patch size {tree['patch_size']} have {n_groups}")
    if tree.get("score") not in SCORES:
        raise ValueError(f"the MAME tree models the class score {tree.get('score')!r}, expected one of {SCORES} "
                         f"(rerun its explain stage)")
    reference = reference_from_meta(record.meta, inputs)
    members, kept = query_design(len(inputs), n_groups, int(n_queries), ctx.seed)
    outputs = query_outputs(ctx.model, inputs, targets, index, members, kept, reference, tree["score"])
    out = {}
    for k, level in enumerate(tree["levels"]):
        out[f"fidelity.level{k}"] = level_r2(outputs, members, kept, np.asarray(level["labels"]),
                                             np.asarray(level["coefficients"], dtype=np.float64))
    out["fidelity"] = out[f"fidelity.level{tree['level']}"]
    return out
