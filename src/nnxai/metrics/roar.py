"""``roar``: RemOve And Retrain, Hooker, Erhan, Kindermans & Kim [150].

Removing features from an input and re-scoring the *same* model (pixel flipping [149]) confounds two
effects: the features mattered, or the degraded inputs left the training distribution.  [150] (Sec. 3)
therefore replace, for every fraction ``t``, the top-``t`` features of every training and test image (ranked
per image by the explanation of the trained model) with an uninformative value, **retrain** a model of
the same architecture from scratch on the degraded training set, and measure its accuracy on the equally
degraded test set.  The better the ranking, the more the accuracy drops; a random ranking is the reference
it must beat.  Here:

- a feature is a pixel (all its channels are replaced) of an image, or a feature of a table; pixels are
  ranked by the survey's saliency map (:func:`saliency_map`, the maximum over channels, as
  ``pixel_flipping``); ties keep pixel order; ``round(t · P)`` of the ``P`` pixels are replaced;
- the uninformative value is the per-channel mean of the train split, as in [150];
- the training set is ``n_train`` seeded training inputs (the attributions of the whole train split would
  cost as much as explaining it); the method explains each for the class the model predicts, as the
  explain stage does (:func:`~nnxai.metrics.rerun.attribute_as_explained`, in the method's batches);
  the test set is the record's explained test inputs, with their true labels;
- the retrained model has the checkpoint's architecture and training settings (``model.checkpoint``,
  written by the train stage) and seed, except that ``epochs`` (when not null) replaces the number of
  epochs: fewer epochs on fewer inputs are a cheaper proxy of [150]'s full retraining, and both curves
  (explanation and random) get the same budget, so their comparison stays fair.  The proxy must still
  learn the task: on ``shapes`` the default CNN retrained on 1500 clean inputs for 11 epochs (~130 Adam
  steps) reaches 0.95 test accuracy, but 0.87 after 2000 inputs × 3 epochs (~50 steps);
- the random ranking draws one uniform order per input from ``ctx.seed``; its curve is computed once per
  evaluate job (all methods of one model) and kept in memory on the metric instance.

``roar`` is the mean test accuracy over ``fractions`` (**lower is better**), ``roar.k<percent>`` the
curve, ``roar.random`` and ``roar.random.k<percent>`` the same for the random ranking.  Retraining is
costly, so the config names the methods and models it runs for (``methods``, ``models``).

Caveat: the retrained model sees *where* the fill is, so the pattern of removed pixels can itself carry
the class (on ``shapes``, a blocky occlusion map traces the object's silhouette, and the class depends
on the shape); a ranking can then score above the unmodified model's accuracy.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch

from nnxai import registry
from nnxai.data import DATASETS
from nnxai.evaluation_cache import code_digest
from nnxai.intervals import PerInput
from nnxai.io import atomic_write_json
from nnxai.methods.base import explained_indices
from nnxai.metrics.attribution import FORWARD_BATCH, explained_inputs
from nnxai.metrics.base import Metric, register_metric
from nnxai.metrics._patches import ranks_from_relevance
from nnxai.metrics.rerun import attribute_as_explained, check_rerunnable
from nnxai.models import build_network, variant
from nnxai.ops.maps import channel_means, saliency_map
from nnxai.params import Choice, Float, Int, List, ParamError, Str
from nnxai.training.trainer import TrainConfig, train_model
from nnxai.training.runtime import seed_everything
from nnxai.training.trainer import accuracy


def rerunnable_methods() -> list[str]:
    """Ids of the implemented methods roar can re-run on training inputs (per-input attribution methods)."""
    return [m for m in registry.implemented_ids() if check_rerunnable(registry.get(m)) is None]


def percent_label(fraction: float) -> str:
    return f"k{100 * fraction:g}"


def remove_top(inputs: torch.Tensor, relevance: torch.Tensor, fraction: float, fill: torch.Tensor) -> torch.Tensor:
    """``inputs`` with the ``round(fraction · P)`` most relevant of their ``P`` pixels (every channel) or
    features set to ``fill``.

    Parameters
    ----------
    inputs : torch.Tensor
        ``(N, C, H, W)`` images or ``(N, F)`` tables.
    relevance : torch.Tensor
        ``(N, H·W)`` or ``(N, F)``: each position's relevance, ranked per input, ties in position order.
    fraction : float
        Share of positions replaced.
    fill : torch.Tensor
        ``(C,)`` per-channel values for images, ``(F,)`` per-feature values for tables.
    """
    flat = inputs.flatten(2) if inputs.dim() > 2 else inputs[:, None, :]        # (N, C, P) or (N, 1, F)
    if relevance.shape != (len(inputs), flat.shape[2]):
        raise ValueError(f"relevance of shape {tuple(relevance.shape)} does not rank the {flat.shape[2]} "
                         f"positions of inputs {tuple(inputs.shape)}")
    n_removed = math.floor(fraction * flat.shape[2] + 0.5)
    gone = ranks_from_relevance(relevance) < n_removed                          # (N, P)
    fill_flat = fill.to(inputs.dtype).reshape(1, flat.shape[1], -1)
    return torch.where(gone[:, None, :], fill_flat, flat).reshape(inputs.shape)


def retraining_setup(model) -> tuple[str, dict, dict, dict, int]:
    """``(architecture, arch_kwargs, training, penalty, seed)`` of the checkpoint ``model`` was loaded from."""
    record = getattr(model, "checkpoint", None)
    if not isinstance(record, dict) or "config" not in record:
        raise ValueError("roar retrains the model with its own settings, read from model.checkpoint (set by "
                         "nnxai.models.load_model); this model has none")
    settings = record["config"]
    if settings.get("shuffle_labels"):
        raise ValueError(f"{record.get('model')} was trained on shuffled labels; roar retrains on the true labels "
                         "(remove it from metric_params.roar.models)")
    penalty = {"penalty": settings["penalty"], "penalty_weight": settings["penalty_weight"]}
    return (record["architecture"], dict(record["arch_kwargs"]), dict(settings["training"]), penalty,
            int(settings["seed"]))


class RetrainedAccuracy:
    """Test accuracy of a fresh network trained on given data, with one checkpoint's settings."""

    def __init__(self, model, epochs: int | None, device):
        self.architecture, self.arch_kwargs, training, penalty, self.seed = retraining_setup(model)
        if epochs is not None:
            training["epochs"] = epochs
        self.config = TrainConfig(**training, **penalty)
        self.device = device

    def __call__(self, x_train, y_train, x_test, y_test) -> PerInput:
        """The retrained network's correctness on each test input (a float: the accuracy)."""
        seed_everything(self.seed)
        network = build_network(self.architecture, **self.arch_kwargs)
        train_model(network, (x_train, y_train), (x_train[:0], y_train[:0]), self.config, self.seed,
                    self.device, progress=False)
        return PerInput(accuracy(network, x_test, y_test, per_input=True))


def curve_mean(curve: list[PerInput]) -> PerInput:
    """Each test input's correctness averaged over the curve's points (its mean: the curve's mean accuracy)."""
    return PerInput(np.mean([point.values for point in curve], axis=0))


def roar_curve(retrain: RetrainedAccuracy, train: tuple, test: tuple, relevance: tuple, fractions,
               fill) -> list[PerInput]:
    """Accuracy after removing, for each fraction, the top features by ``relevance = (train, test)``."""
    (x_train, y_train), (x_test, y_test) = train, test
    return [retrain(remove_top(x_train, relevance[0], f, fill), y_train, remove_top(x_test, relevance[1], f, fill),
                    y_test) for f in fractions]


@torch.no_grad()
def predicted_classes(model, inputs: torch.Tensor) -> torch.Tensor:
    return torch.cat([model(xb).argmax(1) for xb in inputs.split(FORWARD_BATCH)])


def ranking_relevance(attributions: torch.Tensor) -> torch.Tensor:
    """``(N, positions)``: the saliency map of images (max over channels), the attributions of tables."""
    return saliency_map(attributions).flatten(1).double()


@register_metric
class Roar(Metric):
    """RemOve And Retrain [150]: accuracy of models retrained on inputs without their top-ranked features."""

    id = "roar"
    higher_is_better = False
    kinds = frozenset({"attribution"})
    parameters = {
        "fractions": List("shares t of the features removed, the points of the ROAR curve ([150] Sec. 3)",
                          item=Float("a share of the features", low=0.0, high=1.0, low_open=True, high_open=True),
                          unique=True),
        "n_train": Int("seeded training inputs explained and retrained on (at most the train split)", low=1),
        "epochs": Int("epochs of each retraining, a cheaper proxy of [150]'s full retraining; "
                              "null: the checkpoint's own", low=1, nullable=True),
        "methods": List("method ids roar runs for (it retrains once per fraction and method)",
                        item=Choice("a method id", rerunnable_methods), min_items=0),
        "models": List("model variants roar runs for (trained on the true labels)",
                       item=Str("a model variant id"), min_items=0),
        "datasets": List("data sets roar runs on", item=Choice("a data set id", lambda: sorted(DATASETS)),
                         min_items=0, unique=True),
    }
    description = "mean test accuracy of models retrained after removing the top-k% features (fill: train mean)"

    @classmethod
    def check_combination(cls, params):
        owner = f"metric {cls.id!r}"
        if len({percent_label(f) for f in params["fractions"]}) != len(params["fractions"]):
            raise ParamError(f"{owner}.fractions: items must give distinct percent labels, got {params['fractions']!r}")
        for k, model_id in enumerate(params["models"]):
            try:
                shuffled = variant(model_id).shuffle_labels
            except ValueError as err:
                raise ParamError(f"{owner}.models[{k}]: {err}") from None
            if shuffled:
                raise ParamError(f"{owner}.models[{k}]: {model_id!r} is trained on shuffled labels; roar retrains "
                                 "on the true labels, so it cannot score it")

    def __init__(self, **params):
        super().__init__(**params)
        self._random_curves: dict[tuple, list[float]] = {}

    @classmethod
    def why_not(cls, method_cls, info):
        return check_rerunnable(method_cls) or super().why_not(method_cls, info)

    @classmethod
    def cell_why_not(cls, run, dataset, model, method):
        params = run.cfg["metric_params"].get(cls.id, {})
        if method not in params.get("methods", []):
            return f"roar retrains models, so it runs only for metric_params.roar.methods, not {method}"
        if model not in params.get("models", []):
            return f"roar runs only on metric_params.roar.models, not {model}"
        if dataset not in params.get("datasets", []):
            return f"roar runs only on metric_params.roar.datasets, not {dataset}"
        return None

    def __call__(self, record, ctx, method):
        retrain = RetrainedAccuracy(ctx.model, self.params["epochs"], ctx.device)     # settings checked first
        fractions = list(self.params["fractions"])
        x_test, _, test_attributions = explained_inputs(record, ctx)
        x_test = x_test.cpu()
        y_test = ctx.test.y[torch.as_tensor(record.indices, dtype=torch.long)]
        train_idx = torch.as_tensor(explained_indices(len(ctx.train.x), self.params["n_train"], ctx.seed))
        x_train, y_train = ctx.train.x[train_idx], ctx.train.y[train_idx]
        fill = channel_means(ctx.train.x)
        inputs = x_train.to(ctx.device)
        train_attributions = attribute_as_explained(method, ctx, ctx.model, inputs,
                                                    predicted_classes(ctx.model, inputs))
        relevance = (ranking_relevance(train_attributions).cpu(), ranking_relevance(test_attributions).cpu())
        curve = roar_curve(retrain, (x_train, y_train), (x_test, y_test), relevance, fractions, fill)
        random_curve = self._random_curve(ctx, record, retrain, (x_train, y_train), (x_test, y_test), fill)
        out = {self.id: curve_mean(curve), f"{self.id}.random": curve_mean(random_curve)}
        out.update({f"{self.id}.{percent_label(f)}": acc for f, acc in zip(fractions, curve)})
        out.update({f"{self.id}.random.{percent_label(f)}": acc for f, acc in zip(fractions, random_curve)})
        return out

    def _random_curve(self, ctx, record, retrain, train, test, fill) -> list[PerInput]:
        """The curve of a uniformly random ranking, seeded by ``ctx.seed``: the same for every method scored on
        one model and its explained inputs, so it is memoised in the process and, where the run has a cache
        (``ctx.cache_dir``), on disk under a digest of everything it depends on (one evaluate job per
        explanation would otherwise retrain it once per method)."""
        key = (ctx.dataset, ctx.model_id, int(ctx.seed), tuple(int(i) for i in record.indices))
        if key in self._random_curves:
            return self._random_curves[key]
        path = self._random_curve_path(ctx, retrain, train, test, fill)
        curve = _read_curve(path) if path is not None else None
        if curve is None:
            generator = torch.Generator().manual_seed(int(ctx.seed))
            positions = ranking_relevance(train[0][:1]).shape[1]
            relevance = tuple(torch.rand(len(x), positions, generator=generator, dtype=torch.float64)
                              for x in (train[0], test[0]))
            curve = roar_curve(retrain, train, test, relevance, self.params["fractions"], fill)
            if path is not None:
                atomic_write_json(path, {"fractions": list(self.params["fractions"]),
                                         "correct": [point.values.tolist() for point in curve]})
        self._random_curves[key] = curve
        return curve

    def _random_curve_path(self, ctx, retrain, train, test, fill) -> Path | None:
        """``<cache_dir>/roar/<sha256>.json``: the digest of the retraining data, the test inputs, the fill, the
        model's weights and settings, the seed, this metric's parameters and source, or ``None`` without a cache."""
        if ctx.cache_dir is None:
            return None
        digest = hashlib.sha256()
        for tensor in (*train, *test, fill, *ctx.model.state_dict().values()):
            t = tensor.detach().cpu().contiguous()
            digest.update(str((t.dtype, tuple(t.shape))).encode() + t.numpy().tobytes())
        settings = {"seed": int(ctx.seed), "retrain": [retrain.architecture, retrain.arch_kwargs, vars(retrain.config),
                                                       retrain.seed], "params": self.params,
                    "code": code_digest([__name__])}
        digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
        return Path(ctx.cache_dir) / "roar" / f"{digest.hexdigest()}.json"


def _read_curve(path: Path) -> list[PerInput] | None:
    """A cached random-order curve, or ``None`` (absent or unreadable: recomputed)."""
    try:
        entry = json.loads(path.read_text())
        return [PerInput(values) for values in entry["correct"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
