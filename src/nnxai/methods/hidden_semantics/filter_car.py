"""Filter importance by classification accuracy reduction (CAR), Abbasi-Asl & Yu, "Structural compression of
convolutional neural networks based on greedy filter pruning" / "Interpreting convolutional neural networks
through compression" (2017; 2nd survey [51]).

The paper's importance index of filter ``i`` in layer ``L`` is the classification accuracy reduction when that
one filter is pruned, everything else kept:

    CAR(i, L) = Acc(net) - Acc(net without filter i of layer L),

measured on held-out images.  Pruning a filter removes its output map, i.e. the next layer reads zeros where
it read that map: here the filter's channel of the unit layer (the activation map after its ReLU,
``model.unit_layers()``) is zeroed, which is exactly removing it.  Their interpretation (the companion paper,
Sec. 3) reads the *class-wise* CAR: the classes whose accuracy a filter's pruning reduces most; every filter
here gets that class (``class``, with ``class_reduction`` and every class's reduction).  The paper's
compression then prunes greedily, the least important filter first, recomputing CAR after each removal; the
metric ``accuracy_drop`` (:mod:`nnxai.metrics.filter_car`) checks the ranking one shot per layer instead.

Held-out set: a seeded sample of ``n_heldout`` test inputs, at most half the test split (``meta["indices"]``);
the metric scores on the other test inputs, so that the ranking is not judged on the images it was measured on.

**Concept** (data sets with pixel concept masks: shapes): the concept whose images lose the most accuracy
when the filter is pruned, ``concept_reduction = Acc_c(net) - Acc_c(pruned)`` over the held-out images that
show concept ``c`` (its mask is not empty); ``background`` (in every image, so its group is the whole set,
whose reduction is the CAR itself) and ``evidence`` are left out.  It is an image-level tie, not a pixel-level
one: it says which kind of image needs the filter; on shapes the concepts co-vary with the label
(``stripes`` and ``triangle`` decide it), so it often mirrors ``class``.  A filter whose pruning costs no
concept group any accuracy (``max <= 0``) is tied to no concept and gets none.

Computation: the network below the pruned layer does not change, so its activations are computed once and
only the rest of the network is re-run per filter, many pruned copies per batch
(:class:`SuffixRunner`; checked once against the whole network, else the whole network runs with a hook
that zeroes the channel).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from nnxai.explanations import UnitConcepts
from nnxai.methods.base import UnitLabeler, explained_indices
from nnxai.methods.hidden_semantics._conv_units import check_maps, conv_unit_layers
from nnxai.ops.cav import eval_mode
from nnxai.params import Int
from nnxai.registry import register

EXCLUDED_MASKS = ("evidence", "background")


class _Resume(nn.Module):
    """Stands in for ``features``: takes the unit layer's output and runs the modules after it."""

    def __init__(self, rest: list[nn.Module]):
        super().__init__()
        self.rest = nn.ModuleList(rest)

    def forward(self, x):
        for module in self.rest:
            x = module(x)
        return x


class SuffixRunner:
    """The network's logits as a function of one unit layer's output, for pruned copies of it.

    Fast path: a copy of the model whose ``features`` (an ``nn.Sequential`` that holds the unit layer) is
    replaced by the modules after the layer; it is used only when it reproduces the network's logits on the
    given inputs.  Otherwise the whole network runs with a forward hook that replaces the layer's output.
    """

    def __init__(self, model: nn.Module, layer: nn.Module, inputs: torch.Tensor, maps: torch.Tensor,
                 logits: torch.Tensor):
        self.model, self.layer, self.inputs = model, layer, inputs
        self.fast = self._suffix_model(model, layer)
        if self.fast is not None:
            with torch.no_grad():
                again = self.fast(maps)
            scale = float(logits.abs().max().clamp_min(1.0))
            if again.shape != logits.shape or not torch.allclose(again, logits, rtol=1e-4, atol=1e-5 * scale):
                self.fast = None

    @staticmethod
    def _suffix_model(model, layer):
        features = getattr(model, "features", None)
        if not isinstance(features, nn.Sequential):
            return None
        children = list(features.children())
        position = next((i for i, m in enumerate(children) if m is layer), None)
        if position is None:
            return None
        suffix = copy.deepcopy(model)
        suffix.features = _Resume(list(suffix.features.children())[position + 1:])
        return suffix.eval()

    def logits(self, maps: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Logits of the network whose unit-layer output is ``maps`` (the outputs for ``inputs[rows]``)."""
        with torch.no_grad():
            if self.fast is not None:
                return self.fast(maps)

            def replace(_module, _inputs, _output):
                return maps

            handle = self.layer.register_forward_hook(replace)
            try:
                return self.model(self.inputs[rows])
            finally:
                handle.remove()


def pruned_predictions(runner: SuffixRunner, maps: torch.Tensor, prunes: list[np.ndarray],
                       batch_size: int) -> np.ndarray:
    """Predicted classes ``(len(prunes), N)`` of the network with each set of filters ``prunes[j]`` of the
    layer zeroed in ``maps`` (N, K, h, w); pruned copies are batched ``batch_size`` inputs at a time."""
    n, k = maps.shape[:2]
    per = max(1, batch_size // n)
    out = []
    for start in range(0, len(prunes), per):
        group = prunes[start:start + per]
        keep = torch.ones(len(group), k, dtype=maps.dtype, device=maps.device)
        for j, filters in enumerate(group):
            keep[j, torch.as_tensor(np.asarray(filters, dtype=np.int64))] = 0.0
        batch = (maps[None] * keep[:, None, :, None, None]).flatten(0, 1)
        rows = torch.arange(n).repeat(len(group))
        out.append(runner.logits(batch, rows).argmax(1).reshape(len(group), n).cpu())
    return torch.cat(out).numpy()


def unit_maps(model: nn.Module, inputs: torch.Tensor, layers: dict[str, nn.Module], batch_size: int,
              device, owner: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every unit layer's output and the logits on ``inputs``, one forward pass per batch (eval mode
    expected)."""
    maps: dict[str, list] = {name: [] for name in layers}

    def hook(name):
        def record(_module, _inputs, output):
            check_maps(name, output, owner)
            maps[name].append(output.detach())
        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in layers.items()]
    try:
        with torch.no_grad():
            logits = torch.cat([model(inputs[s:s + batch_size].to(device)) for s in range(0, len(inputs), batch_size)])
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat(v) for name, v in maps.items()}, logits


@register("filter_car")
class FilterCAR(UnitLabeler):
    """CAR of every filter of every conv layer on a held-out sample, with the class (and, with concept masks,
    the concept) whose accuracy its pruning reduces most (Abbasi-Asl & Yu [51])."""

    parameters = {
        "n_heldout": Int("held-out test inputs (a seeded sample, at most half the test split) on which accuracy "
                         "and its reduction are measured; the metric scores on the others", low=1),
        "batch_size": Int("inputs per forward pass; pruned copies of the held-out set are stacked up to it",
                          low=1),
    }
    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})

    @classmethod
    def check_run(cls, params, info, n_test):
        if n_test < 2:
            return f"the test split ({n_test} inputs) cannot be halved into a held-out set and the metric's inputs"
        return None

    def _run(self, ctx):
        record = self.label_units(ctx.model, ctx)
        return record, record.meta["n_heldout"]

    def label_units(self, model: nn.Module, ctx) -> UnitConcepts:
        owner = f"method {self.spec.id!r}"
        p = self.params
        n_test = len(ctx.test.x)
        if n_test < 2:
            raise ValueError(f"{owner}: the test split has {n_test} input(s); it needs 2 to hold one out")
        idx = explained_indices(n_test, min(p["n_heldout"], n_test // 2), ctx.seed)
        inputs, y = ctx.test.x[idx].to(ctx.device), ctx.test.y[idx].numpy()
        layers = conv_unit_layers(model, owner)
        n_classes = int(ctx.info.n_classes)
        class_names = list((ctx.test.meta or {}).get("class_names") or [str(c) for c in range(n_classes)])
        concepts, groups = _concept_groups(ctx, idx)
        with eval_mode(model):
            maps, logits = unit_maps(model, inputs, layers, p["batch_size"], ctx.device, owner)
            base = (logits.argmax(1).cpu().numpy() == y)
            units, fast = [], {}
            for name, module in layers.items():
                runner = SuffixRunner(model, module, inputs, maps[name], logits)
                fast[name] = runner.fast is not None
                n_filters = maps[name].shape[1]
                predicted = pruned_predictions(runner, maps[name], [np.array([k]) for k in range(n_filters)],
                                               p["batch_size"])
                correct = predicted == y[None]                              # (filters, N)
                car = base.mean() - correct.mean(1)
                order = np.argsort(-car, kind="stable")
                rank = np.empty(n_filters, dtype=np.int64)
                rank[order] = np.arange(1, n_filters + 1)
                for k in range(n_filters):
                    units.append(_unit(name, k, car[k], rank[k], base, correct[k], y, class_names,
                                       concepts, groups))
        meta = {"n_heldout": int(len(idx)), "indices": [int(i) for i in idx], "accuracy": float(base.mean()),
                "layers": list(layers), "suffix_fast_path": fast,
                "class_accuracy": [_mean_or_nan(base[y == c]) for c in range(n_classes)],
                "excluded_masks": list(EXCLUDED_MASKS) if groups is not None else []}
        return UnitConcepts(units=units, concepts=concepts, meta=meta)


def _mean_or_nan(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def _concept_groups(ctx, idx):
    """Concept names and a bool ``(concepts, N)`` table of which held-out images show each, or ``([], None)``."""
    if ctx.test.masks is None:
        return [], None
    names = list(ctx.test.meta.get("mask_names") or ctx.info.mask_names)
    if len(names) != ctx.test.masks.shape[1]:
        raise ValueError(f"{ctx.test.masks.shape[1]} mask channels but {len(names)} mask names")
    keep = [i for i, n in enumerate(names) if n not in EXCLUDED_MASKS]
    shown = np.asarray(ctx.test.masks[idx][:, keep]).reshape(len(idx), len(keep), -1).any(2)
    return [names[i] for i in keep], shown.T


def _unit(layer, k, car, rank, base, correct, y, class_names, concepts, groups) -> dict:
    class_red = [(float(base[y == c].mean() - correct[y == c].mean()) if (y == c).any() else None)
                 for c in range(len(class_names))]
    valid = [c for c in range(len(class_names)) if class_red[c] is not None]
    worst = max(valid, key=lambda c: (class_red[c], -c))
    unit = {"layer": layer, "unit": int(k), "score": float(car), "car": float(car), "rank": int(rank),
            "accuracy_pruned": float(correct.mean()), "class": int(worst), "class_name": class_names[worst],
            "class_reduction": class_red[worst], "class_reductions": class_red}
    if groups is not None:
        reductions = {c: (float(base[g].mean() - correct[g].mean()) if g.any() else None)
                      for c, g in zip(concepts, groups)}
        present = [c for c in concepts if reductions[c] is not None]
        unit["concept_reductions"] = reductions
        if present:
            best = max(present, key=lambda c: (reductions[c], -concepts.index(c)))
            if reductions[best] > 0:
                unit["concept"], unit["concept_reduction"] = best, reductions[best]
    return unit
