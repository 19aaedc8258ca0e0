"""``accuracy_drop``: the check of filter CAR pruning, Abbasi-Asl & Yu (2017; 2nd survey [51]).

The paper's claim (its Fig. 2-3, compression of AlexNet/ResNet layers): pruning the filters with the smallest
classification accuracy reduction (CAR) costs less accuracy than pruning as many filters at random, while
pruning the most important ones costs the most.  Per conv layer with ``n`` filters, ``k = ceil(fraction * n)``
filters are pruned at once (their output maps zeroed, as the method prunes one):

* ``accuracy_drop``: the accuracy lost when the ``k`` filters of least CAR are pruned (lower is better);
* ``accuracy_drop.random``: the same for ``k`` filters drawn at random: the mean over every k-subset of the
  layer when there are at most ``n_random`` of them (exact), else over ``n_random`` seeded draws; the
  reference the CAR ranking must beat;
* ``accuracy_drop.most``: the same for the ``k`` filters of largest CAR (a good ranking makes it the largest
  of the three, the other direction);
* ``accuracy_drop[.random|.most].<layer>``: each layer's value.

Ties in CAR (many filters whose single pruning changes no held-out prediction) are broken by filter index.
The paper prunes greedily, one filter at a time with CAR recomputed after each; here the ranking of the record
is applied once per layer (k pruned together), which is what a ranking claims.  The drops are scored on test
inputs the method did not measure CAR on (the record's ``meta["indices"]`` are left out), up to ``n_inputs`` of
them (a seeded sample); each value is a mean over those inputs of ``correct(net) - correct(pruned)``,
averaged over the layers, with a bootstrap interval.

Where the one-shot ranking can fail (the measured values: ``paper/results.md`` and the figure
``filter_car_pruning``): on a network that is nearly always right on the held-out images (the ``shapes``
baseline), every single pruning changes at most a few predictions, so most filters have CAR exactly 0 and the
"least important" ones are those whose pruning fixes the one same error (a negative CAR), all pushing the same
class; pruning a quarter of them at once can then tip many inputs to the other class, and the least-CAR drop
exceed the random one.  The paper's greedy re-ranking after each removal would avoid that; a one-shot ranking
cannot.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from nnxai.intervals import PerInput
from nnxai.metrics.base import Metric, register_metric
from nnxai.params import Float, Int


def pruning_sets(car: np.ndarray, k: int, n_random: int, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """The filter sets pruned in one layer: ``least`` and ``most`` (one set each, ties by index) and
    ``random`` (every k-subset when there are at most ``n_random``, else ``n_random`` seeded draws)."""
    n = len(car)
    if not 1 <= k <= n:
        raise ValueError(f"cannot prune {k} of {n} filters")
    index = np.arange(n)
    least = np.lexsort((index, car))[:k]
    most = np.lexsort((index, -car))[:k]
    if math.comb(n, k) <= n_random:
        random = [np.array(c) for c in itertools.combinations(range(n), k)]
    else:
        random = [np.sort(rng.choice(n, size=k, replace=False)) for _ in range(n_random)]
    return {"least": [np.sort(least)], "most": [np.sort(most)], "random": random}


@register_metric
class AccuracyDrop(Metric):
    id = "accuracy_drop"
    higher_is_better = False
    kinds = frozenset({"hidden_semantics"})
    parameters = {
        "fraction": Float("k = ceil(fraction * n) of each conv layer's n filters are pruned at once", low=0.0,
                          high=1.0, low_open=True),
        "n_random": Int("random k-subsets per layer for accuracy_drop.random (all of them when a layer has at "
                        "most this many)", low=1),
        "n_inputs": Int("test inputs scored: a seeded sample of those the method did not measure CAR on", low=1),
    }
    description = ("accuracy lost when each layer's k least-CAR filters are pruned, vs k random (.random) and the "
                   "k largest (.most) [51]")

    def __call__(self, record, ctx, method):
        from nnxai.ops.cav import eval_mode
        from nnxai.methods.hidden_semantics.filter_car import SuffixRunner, pruned_predictions, unit_maps

        if "indices" not in record.meta or not record.units or "car" not in record.units[0]:
            raise ValueError("accuracy_drop scores filter_car records: units with 'car' and meta['indices']")
        rows = self.scored_inputs(len(ctx.test.y), record.meta["indices"], ctx.seed)
        model, batch_size = ctx.model, int(method.params["batch_size"])
        layers = {name: module for name, module in model.unit_layers().items() if name in record.meta["layers"]}
        missing = sorted(set(record.meta["layers"]) - set(layers))
        if missing:
            raise ValueError(f"the record's layers {missing} are not unit layers of the model ({list(model.unit_layers())})")
        inputs, y = ctx.test.x[rows].to(ctx.device), ctx.test.y[rows].numpy()
        rng = np.random.default_rng([ctx.seed, 51])
        drops: dict[str, list[np.ndarray]] = {"least": [], "random": [], "most": []}
        out: dict[str, float] = {}
        with eval_mode(model):
            maps, logits = unit_maps(model, inputs, layers, batch_size, ctx.device, "accuracy_drop")
            base = (logits.argmax(1).cpu().numpy() == y).astype(np.float64)
            for name, module in layers.items():
                car = _layer_car(record, name, maps[name].shape[1])
                sets = pruning_sets(car, math.ceil(self.params["fraction"] * len(car)), self.params["n_random"], rng)
                runner = SuffixRunner(model, module, inputs, maps[name], logits)
                flat = [s for kind in ("least", "most", "random") for s in sets[kind]]
                correct = (pruned_predictions(runner, maps[name], flat, batch_size) == y[None]).astype(np.float64)
                per_kind = {"least": correct[0], "most": correct[1], "random": correct[2:].mean(0)}
                for kind, kept in per_kind.items():
                    drop = base - kept
                    drops[kind].append(drop)
                    suffix = "" if kind == "least" else f".{kind}"
                    out[f"accuracy_drop{suffix}.{name}"] = float(drop.mean())
        return {"accuracy_drop": PerInput(np.mean(drops["least"], axis=0)),
                "accuracy_drop.random": PerInput(np.mean(drops["random"], axis=0)),
                "accuracy_drop.most": PerInput(np.mean(drops["most"], axis=0)), **out}

    def scored_inputs(self, n_test: int, measured, seed: int) -> np.ndarray:
        """Up to ``n_inputs`` test positions outside ``measured``, a seeded sample, ascending."""
        rest = np.setdiff1d(np.arange(n_test), np.asarray(measured, dtype=np.int64))
        if not len(rest):
            raise ValueError(f"filter_car measured CAR on all {n_test} test inputs; accuracy_drop needs others "
                             "(lower the method's n_heldout)")
        rng = np.random.default_rng([seed, 52])
        return np.sort(rng.permutation(rest)[:self.params["n_inputs"]])


def _layer_car(record, layer: str, n_filters: int) -> np.ndarray:
    car = np.full(n_filters, np.nan)
    for unit in record.units:
        if unit["layer"] == layer:
            car[int(unit["unit"])] = float(unit["car"])
    if np.isnan(car).any():
        raise ValueError(f"the record gives no CAR for filters {np.flatnonzero(np.isnan(car)).tolist()} of {layer!r}")
    return car

