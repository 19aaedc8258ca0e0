"""Metrics of critical data routing paths (CDRP [77]; METHODS.md: gate_sparsity, path_fidelity).

A CDRP record (:class:`~nnxai.explanations.LocalRules`, ``feature_space="channels"``) holds, per explained
input, ``"gates"``: the control gate of every output channel of every gated layer.

* ``gate_sparsity``: the fraction of an input's gates that are exactly 0 (channels off its critical path),
  averaged over inputs; ``gate_sparsity.<layer>``: the same per layer.  Higher: a shorter path.
* ``path_fidelity``: the fraction of inputs whose predicted class the network keeps when *only* the critical
  path is active, every critical channel passed unchanged (gate 1) and every other channel closed (gate 0);
  ``path_fidelity.gated``: the same with the learnt gate values themselves (the distilled network of [77]).
  Both run the network on the explained test inputs, so they check the record against the model.
"""

from __future__ import annotations

import numpy as np
import torch

from nnxai.explanations import LocalRules
from nnxai.intervals import PerInput
from nnxai.metrics.base import Metric, register_metric
from nnxai.ops.cav import eval_mode

#: Inputs per forward pass of the gated network.
BATCH = 100


def _gates(record) -> dict[str, np.ndarray]:
    """Every layer's gates of every input, ``{layer: (N, C)}``."""
    if not isinstance(record, LocalRules) or any("gates" not in e for e in record.explanations):
        raise ValueError(f"routing-path metrics score CDRP records (entries with 'gates'), got "
                         f"{type(record).__name__} of {record.meta.get('method')!r}")
    if not record.explanations:
        return {}
    layers = list(record.explanations[0]["gates"])
    return {name: np.array([e["gates"][name] for e in record.explanations], dtype=np.float32) for name in layers}


@register_metric
class GateSparsity(Metric):
    """Fraction of control gates at exactly 0 (module docstring)."""

    id = "gate_sparsity"
    higher_is_better = True
    kinds = frozenset({"local_rule"})
    description = "fraction of an input's channel gates at zero (off its critical routing path)"

    def __call__(self, record, ctx=None, method=None):
        gates = _gates(record)
        if not gates:
            return {"gate_sparsity": float("nan")}
        closed = np.concatenate([g == 0 for g in gates.values()], axis=1)
        out = {"gate_sparsity": PerInput(closed.mean(axis=1))}
        out.update({f"gate_sparsity.{name}": PerInput((g == 0).mean(axis=1)) for name, g in gates.items()})
        return out


@register_metric
class PathFidelity(Metric):
    """Fraction of inputs whose prediction survives on the critical path alone (module docstring)."""

    id = "path_fidelity"
    higher_is_better = True
    kinds = frozenset({"local_rule"})
    description = "fraction of inputs whose class the network keeps with only the critical channels active"

    def __call__(self, record, ctx, method=None):
        from nnxai.methods.rule.local.cdrp import gated

        gates = _gates(record)
        if not gates:
            return {"path_fidelity": float("nan"), "path_fidelity.gated": float("nan")}
        model = ctx.model
        device = next(model.parameters()).device
        inputs = ctx.test.x[np.asarray(record.indices, dtype=np.int64)]
        original = np.asarray(record.targets, dtype=np.int64)
        kept = {"binary": [], "gated": []}
        with torch.no_grad(), eval_mode(model):
            for start in range(0, len(inputs), BATCH):
                x = inputs[start:start + BATCH].to(device)
                learnt = {name: torch.as_tensor(g[start:start + BATCH], device=device) for name, g in gates.items()}
                for kind, values in (("binary", {n: (g > 0).float() for n, g in learnt.items()}), ("gated", learnt)):
                    with gated(model, values):
                        kept[kind].append(model(x).argmax(1).cpu().numpy())
        binary, soft = np.concatenate(kept["binary"]), np.concatenate(kept["gated"])
        return {"path_fidelity": PerInput(binary == original), "path_fidelity.gated": PerInput(soft == original)}
