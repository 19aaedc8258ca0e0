"""Sanity checks for saliency maps, Adebayo et al. [75]: do the maps depend on the model and on the data?

[75] argue that a map which stays the same when the model's weights or its training labels are
randomised cannot explain the model (an edge detector passes every visual inspection, and fails both
checks).  Both metrics below compare the recorded maps with maps of a randomised model and report how
similar they stay (:func:`~nnxai.metrics.map_similarity.map_similarity`: Spearman ρ of absolute and of
signed maps, SSIM of the normalised absolute maps on images).  **Lower is better**: a method that passes
the check has maps that change.

``sanity_model_randomisation`` (cascading randomisation, [75] Sec. 4)
    The layers with parameters are re-initialised one after the other from the top (logits) down,
    cumulatively, each with its module's default initialisation (``reset_parameters``) seeded by
    ``ctx.seed + k`` at step ``k`` (:func:`cascading_randomisation`, on a deep copy: the real model is
    never touched).  After every step the method explains the same inputs for the same classes as the
    record (:func:`~nnxai.metrics.rerun.attribute_as_explained`: a fresh copy of the method is fitted for
    the randomised model on the cell's train split and seed, as the explain stage fits it), for the first ``n_inputs`` inputs of the record (a seeded sample
    already; the parameter bounds the cost, one re-run per layer, of the slow perturbation methods).
    The value is the mean Spearman ρ of the absolute maps once every layer is randomised; sub-keys give
    ``spearman_signed`` and ``ssim`` at that point and all three per step as ``<score>.step<k>_<layer>``.

``sanity_data_randomisation`` (data randomisation test, [75] Sec. 5)
    The same method's maps of ``baseline_shuffled_labels`` (the baseline architecture and training,
    labels permuted once: :mod:`nnxai.pipeline`) for the same seeded test inputs.  Each model's record
    explains *its own* predicted class, as [75] do, so the two maps of an input may be for different
    classes; ``.same_target`` reports how often the classes agree.  Only the ``baseline`` cell of a run
    that also trains ``baseline_shuffled_labels`` on the dataset computes it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from nnxai.explanations import load_explanation
from nnxai.intervals import PerInput
from nnxai.metrics.attribution import explained_inputs
from nnxai.metrics.base import Metric, register_metric
from nnxai.metrics.map_similarity import map_similarity
from nnxai.metrics.rerun import attribute_as_explained, check_rerunnable
from nnxai.params import Int
from nnxai.paths import checkpoint_path, explanation_path

SHUFFLED_MODEL = "baseline_shuffled_labels"


def parametrised_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules holding parameters of their own, in definition order (input to logits for our networks)."""
    return [(name, module) for name, module in model.named_modules()
            if next(module.parameters(recurse=False), None) is not None]


def reinitialise(layer: nn.Module, seed: int) -> None:
    """Re-draw ``layer``'s parameters with its default initialisation, from the CPU generator seeded with
    ``seed`` (same values on any device); the global random state is left as it was."""
    if not hasattr(layer, "reset_parameters"):
        raise ValueError(f"layer {type(layer).__name__} has parameters but no reset_parameters(), so its "
                         "default initialisation is unknown")
    fresh = copy.deepcopy(layer).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        fresh.reset_parameters()
    layer.load_state_dict(fresh.state_dict())


def cascading_randomisation(model: nn.Module, seed: int) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(layer name, model)`` after re-initialising each layer in turn from the top down ([75]
    Sec. 4), cumulatively, on one deep copy of ``model``; step ``k`` (from 1) is seeded by ``seed + k``."""
    randomised = copy.deepcopy(model)
    for k, (name, layer) in enumerate(reversed(parametrised_layers(randomised)), start=1):
        reinitialise(layer, seed + k)
        yield name, randomised


@register_metric
class SanityModelRandomisation(Metric):
    """Cascading model parameter randomisation test of [75] (Sec. 4)."""

    id = "sanity_model_randomisation"
    reexplains = True
    higher_is_better = False
    kinds = frozenset({"attribution"})
    parameters = {"n_inputs": Int("explained inputs re-explained after every randomisation step: the record's "
                                  "first (one re-run per layer bounds the cost)", low=1)}
    description = ("Spearman rho of |maps| of the trained and the fully (cascade-)randomised model [75]; "
                   "lower = the maps depend on the weights")

    @classmethod
    def why_not(cls, method_cls, info):
        return check_rerunnable(method_cls) or super().why_not(method_cls, info)

    def __call__(self, record, ctx, method):
        inputs, targets, attributions = (t[:self.params["n_inputs"]] for t in explained_inputs(record, ctx))
        values: dict[str, float] = {}
        scores: dict[str, float] = {}
        for k, (layer, randomised) in enumerate(cascading_randomisation(ctx.model, int(ctx.seed)), start=1):
            scores = map_similarity(attributions, attribute_as_explained(method, ctx, randomised, inputs, targets))
            step = f"step{k}_{layer.replace('.', '_')}"
            values.update({f"{self.id}.{score}.{step}": value for score, value in scores.items()})
        if not scores:
            raise ValueError("the model has no parameters to randomise")
        values[self.id] = scores["spearman"]
        values.update({f"{self.id}.{score}": value for score, value in scores.items() if score != "spearman"})
        return values


def shuffled_explanation_path(dataset: str, method: str) -> str:
    return explanation_path(dataset, SHUFFLED_MODEL, method)


@register_metric
class SanityDataRandomisation(Metric):
    id = "sanity_data_randomisation"
    higher_is_better = False
    compares_control = True
    kinds = frozenset({"attribution"})
    description = ("Spearman rho of |maps| of the baseline and of the model trained on shuffled labels [75]; "
                   "lower = the maps depend on the labels")

    @classmethod
    def cell_why_not(cls, run, dataset, model, method):
        if model != "baseline":
            return f"compares the baseline with {SHUFFLED_MODEL}; {model} is not the baseline"
        if SHUFFLED_MODEL not in run.models_for(dataset):
            return f"the run does not train {SHUFFLED_MODEL} on {dataset} (config key models)"
        if method not in run.methods_for(dataset, SHUFFLED_MODEL):
            return f"{method} is not run on {dataset}/{SHUFFLED_MODEL}"
        return None

    @classmethod
    def required_inputs(cls, cfg, dataset, model, method):
        return [shuffled_explanation_path(dataset, method), checkpoint_path(dataset, SHUFFLED_MODEL)]

    def __call__(self, record, ctx, method):
        _, _, attributions = explained_inputs(record, ctx)
        path = ctx.workdir / shuffled_explanation_path(ctx.dataset, method.spec.id)
        shuffled = load_explanation(path)
        # The control may explain fewer inputs (config control_n_explain): a subset of the baseline's, as
        # both are the same seeded sample; the maps are compared on the inputs both explain.
        rows = np.searchsorted(record.indices, shuffled.indices)
        if len(shuffled.indices) == 0 or not np.array_equal(record.indices[np.minimum(rows, len(record.indices) - 1)],
                                                            shuffled.indices):
            raise ValueError(f"{path} explains test inputs that the {ctx.model_id} record does not "
                             f"({len(shuffled.indices)} vs {len(record.indices)} indices); both must come from "
                             "the same seed, the control's n_explain at most the baseline's: rerun their explain "
                             "stages")
        _, _, shuffled_attributions = explained_inputs(shuffled, ctx)
        scores = map_similarity(attributions[torch.as_tensor(rows, device=attributions.device)], shuffled_attributions)
        out = {self.id: scores.pop("spearman")}
        out.update({f"{self.id}.{score}": value for score, value in scores.items()})
        out[f"{self.id}.same_target"] = PerInput(shuffled.targets == record.targets[rows])
        return out
