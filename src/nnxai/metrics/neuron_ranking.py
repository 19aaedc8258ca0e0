"""Metrics of the neuron ranking of Dalvi et al. [100] (AAAI 2019), recomputed on the record's held-out inputs.

Both metrics rebuild the probes from the record (``meta["probes"]``, ``meta["standardisation"]``, over
``meta["neurons"]``), recompute the neurons' activations on the held-out test inputs ``meta["test_indices"]``
and the concept targets there (:func:`~nnxai.methods.hidden_semantics.neuron_ranking.concept_targets`), so
they check what the record claims rather than repeat it.  Values are means over those inputs with a bootstrap
interval (:class:`~nnxai.intervals.PerInput`).

* ``probe_accuracy``: held-out accuracy of the probes, per input the mean over concepts (so its mean is the
  mean of the per-concept accuracies ``probe_accuracy.<concept>``); ``probe_accuracy.majority``: the same
  for always predicting the class that is the majority on the training sample (the chance level to beat).
* ``ablation_drop``: the paper's ablation - zero the top-ranked ``fraction`` of the neurons and measure the
  accuracy drop, against zeroing as many random neurons (the mean over ``n_random`` seeded draws) and the
  bottom-ranked ones.  ``ablation_drop`` = probe drop (top) - probe drop (random); ``.top``, ``.random``,
  ``.bottom`` the drops, ``.vs_bottom`` = top - bottom.  The probe's input of a zeroed neuron is its
  standardised value 0 (its term leaves the probe).  ``.network*``: the same with the neurons' activations
  (a channel's whole map) set to 0 inside the network, scored by its accuracy on the labels.
  ``.n_ablated``: how many neurons each ablation zeroes, ``max(1, round(fraction D))``.
"""

from __future__ import annotations

import numpy as np
import torch

from nnxai.intervals import PerInput
from nnxai.methods.hidden_semantics._unit_activations import model_device, units_zeroed
from nnxai.ops.cav import eval_mode
from nnxai.methods.hidden_semantics.neuron_ranking import concept_targets, neuron_activations, standardise
from nnxai.metrics.base import Metric, register_metric
from nnxai.params import Float, Int

REQUIRED = ("probes", "standardisation", "neurons", "ranking", "test_indices")


def _held_out(record, ctx) -> dict:
    """The record's probes and the held-out inputs' standardised activations and targets."""
    missing = [k for k in REQUIRED if k not in record.meta]
    if missing:
        raise ValueError(f"the record lacks meta {missing}; it was not written by neuron_ranking")
    meta = record.meta
    idx = np.asarray(meta["test_indices"], dtype=np.int64)
    batch = int(meta.get("params", {}).get("batch_size") or max(1, len(idx)))   # batching changes no value
    acts, neurons = neuron_activations(ctx.model, ctx.test.x[idx], batch)
    if neurons != [list(n) for n in meta["neurons"]]:
        raise ValueError("the model's neurons differ from those the record's probes were fitted on")
    names, targets, _ = concept_targets(ctx.test, ctx.info)
    concepts = list(meta["probes"])
    unknown = [c for c in concepts if c not in names]
    if unknown:
        raise ValueError(f"the record probes concepts {unknown} that the test split does not have ({names})")
    return {"idx": idx, "batch": batch, "neurons": neurons, "concepts": concepts,
            "z": standardise(acts, meta["standardisation"]["mean"], meta["standardisation"]["scale"]),
            "y": targets[idx][:, [names.index(c) for c in concepts]] == 1,
            "w": np.asarray([meta["probes"][c]["weights"] for c in concepts], dtype=np.float64),
            "b": np.asarray([meta["probes"][c]["bias"] for c in concepts], dtype=np.float64)}


def probe_correct(z: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, C)`` bool: whether each probe classifies each input right."""
    return ((z @ w.T + b) > 0) == y


@register_metric
class ProbeAccuracy(Metric):
    id = "probe_accuracy"
    higher_is_better = True
    kinds = frozenset({"hidden_semantics"})
    description = "held-out accuracy of the elastic-net concept probes, mean over concepts and per concept [100]"

    def __call__(self, record, ctx, method):
        h = _held_out(record, ctx)
        correct = probe_correct(h["z"], h["y"], h["w"], h["b"])
        prevalence = record.meta.get("prevalence", {})
        majority = np.asarray([float(prevalence.get(c, 0.0)) >= 0.5 for c in h["concepts"]])
        out = {self.id: PerInput(correct.mean(1)),
               f"{self.id}.majority": PerInput((h["y"] == majority[None, :]).mean(1))}
        out.update({f"{self.id}.{c}": PerInput(correct[:, i]) for i, c in enumerate(h["concepts"])})
        return out


@register_metric
class AblationDrop(Metric):
    id = "ablation_drop"
    higher_is_better = True
    kinds = frozenset({"hidden_semantics"})
    parameters = {
        "fraction": Float("share of the neurons zeroed in each ablation (top, random, bottom of the ranking)",
                          low=0.0, high=1.0, low_open=True, high_open=True),
        "n_random": Int("seeded draws of random neurons averaged", low=1),
    }
    description = ("accuracy drop of the probes (and the network) when the top-ranked neurons are zeroed, minus "
                   "the drop for as many random neurons [100]")

    def __call__(self, record, ctx, method):
        h = _held_out(record, ctx)
        neurons = h["neurons"]
        position = {tuple(n): j for j, n in enumerate(neurons)}
        order = np.asarray([position[tuple(n)] for n in record.meta["ranking"]], dtype=np.int64)
        m = max(1, int(round(self.params["fraction"] * len(order))))
        rng = np.random.default_rng([ctx.seed, 100])
        sets = {"top": order[:m], "bottom": order[-m:]}
        randoms = [rng.choice(len(order), size=m, replace=False) for _ in range(self.params["n_random"])]
        full = probe_correct(h["z"], h["y"], h["w"], h["b"]).mean(1)

        def probe_drop(zeroed):
            z = h["z"].copy()
            z[:, zeroed] = 0.0
            return full - probe_correct(z, h["y"], h["w"], h["b"]).mean(1)

        labels = np.asarray(ctx.test.y)[h["idx"]]
        net_full = self._network_correct(ctx.model, ctx.test.x[h["idx"]], labels, neurons, [], h["batch"])

        def network_drop(zeroed):
            return net_full - self._network_correct(ctx.model, ctx.test.x[h["idx"]], labels, neurons, zeroed,
                                                    h["batch"])

        drops = {name: probe_drop(s) for name, s in sets.items()}
        drops["random"] = np.mean([probe_drop(s) for s in randoms], axis=0)
        net = {name: network_drop(s) for name, s in sets.items()}
        net["random"] = np.mean([network_drop(s) for s in randoms], axis=0)
        i = self.id
        return {i: PerInput(drops["top"] - drops["random"]), f"{i}.top": PerInput(drops["top"]),
                f"{i}.random": PerInput(drops["random"]), f"{i}.bottom": PerInput(drops["bottom"]),
                f"{i}.vs_bottom": PerInput(drops["top"] - drops["bottom"]),
                f"{i}.network": PerInput(net["top"] - net["random"]), f"{i}.network_top": PerInput(net["top"]),
                f"{i}.network_random": PerInput(net["random"]), f"{i}.network_bottom": PerInput(net["bottom"]),
                f"{i}.network_vs_bottom": PerInput(net["top"] - net["bottom"]), f"{i}.n_ablated": float(m)}

    @staticmethod
    def _network_correct(model, x, labels, neurons, zeroed, batch) -> np.ndarray:
        """Per input, whether the network with the ``zeroed`` neurons (positions in ``neurons``) set to 0
        predicts the label."""
        by_layer: dict[str, list[int]] = {}
        for j in zeroed:
            layer, k = neurons[int(j)]
            by_layer.setdefault(layer, []).append(int(k))
        device = model_device(model)
        preds = []
        with eval_mode(model), units_zeroed(model, {k: np.asarray(v) for k, v in by_layer.items()}, "ablation_drop"):
            with torch.no_grad():
                for start in range(0, len(x), batch):
                    preds.append(model(x[start:start + batch].to(device)).argmax(1).cpu().numpy())
        return (np.concatenate(preds) == labels).astype(np.float64)
