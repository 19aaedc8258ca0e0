"""MAPLE, Plumb, Molitor & Talwalkar [101]: a linear model of the classifier, local to ``x`` in the
*supervised neighbourhood* that a random forest defines.

To explain a trained model (a black box), MAPLE fits a tree ensemble to the model's outputs on the
training inputs, ``{(φ(x_i), f(x_i))}``, and weighs training point ``i`` for a query ``x`` by how often it
shares a leaf with ``x``, each tree's vote split among its leaf (the SILO weights [101] builds on; the
``training_point_weights`` of the authors' code):

    w_i(x) = Σ_{k=1}^{K} 1[e_k(x_i) = e_k(x)] / |{j : e_k(x_j) = e_k(x)}|,

with ``e_k(·)`` the leaf of tree ``k``.  The local explanation is the weighted linear model of the class
score (MAPLE's local linear model at ``x``)

    (β_x, b_x) = argmin_{β, b} Σ_i w_i(x) (f_c(x_i) − b − β·φ(x_i))² + α ‖β‖²,

a ridge fit as in the authors' code (``Ridge(alpha)`` with the weights as sample weights), and its
coefficients ``β_x`` are the attribution (the paper's explanation is the local linear model; no
multiplication by the input).  [101]'s DStump feature selection is not used: every feature gets a
coefficient.

Here ``f_c`` is the softmax probability of class ``c``; the forest (scikit-learn's ``RandomForestRegressor``
with ``n_trees``, ``min_samples_leaf``, ``max_features``, seeded by the run's seed) is fitted once per model,
by :meth:`Maple.fit`, to the vector of all class probabilities, so one neighbourhood serves every class and
every later explanation with that model reuses it; in a workflow run the cell's explain and evaluate jobs
share the fitted forest (:mod:`nnxai.methods.fit_cache`).  Features ``φ``: the
columns of a table as they are; for images the mean of each channel over each cell of a fixed grid of
``patch`` × ``patch`` squares (edge cells smaller when the side is not a multiple), so the coefficient of a
(channel, cell) feature is the attribution of every pixel of that cell in that channel.  The intercepts
go to ``meta["surrogate"]`` for the ``local_fidelity`` metric (:mod:`nnxai.ops.surrogate`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from nnxai.methods import fit_cache
from nnxai.methods.attribution.perturbation._train_data import check_input_shape, train_inputs
from nnxai.methods.base import AttributionMethod
from nnxai.ops.surrogate import LocalSurrogate, Neighbourhood
from nnxai.params import Float, Int
from nnxai.registry import register

#: Most inputs in one forward pass; bounds memory (results change only by float rounding).
PASS_INPUTS = 512


def grid_index(shape: tuple[int, ...], patch: int) -> torch.Tensor:
    """Feature of every element of an input of ``shape``: (channel, grid cell) for (C, H, W), the column
    for (F,); long, shaped like the input."""
    if len(shape) == 1:
        return torch.arange(shape[0])
    C, H, W = shape
    cols = -(-W // patch)
    cells = (torch.arange(H)[:, None] // patch) * cols + torch.arange(W)[None, :] // patch
    return torch.arange(C)[:, None, None] * (-(-H // patch) * cols) + cells[None]


def grid_features(inputs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``φ(x)``: the mean of ``inputs`` (N, ...) over the elements of each feature of ``index``; float64."""
    idx = index.reshape(-1).to(inputs.device)
    flat = inputs.reshape(len(inputs), idx.numel()).double()     # explicit width: a pool may hold no point
    n_features = int(idx.max()) + 1
    total = torch.zeros(len(inputs), n_features, dtype=torch.float64, device=inputs.device)
    total.index_add_(1, idx, flat)
    return total / torch.bincount(idx, minlength=n_features).double()


def leaf_weights(train_leaves: np.ndarray, query_leaves: np.ndarray) -> np.ndarray:
    """MAPLE's ``w_i(x)`` for each query: ``train_leaves`` (n, K), ``query_leaves`` (B, K) → (B, n)."""
    out = np.empty((len(query_leaves), len(train_leaves)))
    for b, leaves in enumerate(query_leaves):
        shared = train_leaves == leaves[None, :]                     # (n, K)
        out[b] = (shared / np.maximum(shared.sum(0), 1)).sum(1)
    return out


class Forest:
    """The forest of a model, its leaves of the training points and their features and class scores."""

    def __init__(self, model: nn.Module, x_train: torch.Tensor, index: torch.Tensor, params: dict, seed: int):
        from sklearn.ensemble import RandomForestRegressor

        with torch.no_grad():
            self.scores = torch.cat([model(part).softmax(dim=1) for part in x_train.split(PASS_INPUTS)]).double()
        self.index = index
        self.features = grid_features(x_train, index)

        def build():
            features = self.features.cpu().numpy().astype(np.float32)
            forest = RandomForestRegressor(
                n_estimators=params["n_trees"], min_samples_leaf=params["min_samples_leaf"],
                max_features=float(params["max_features"]), random_state=seed, n_jobs=torch.get_num_threads())
            forest.fit(features, self.scores.cpu().numpy())
            return forest, forest.apply(features)

        # The explain and evaluate jobs of one cell fit the same forest: the first keeps it (fit_cache).
        from nnxai.evaluation_cache import code_digest

        key = fit_cache.digest("maple-forest", code_digest([__name__]), model, x_train, index, seed,
                               {k: params[k] for k in ("n_trees", "min_samples_leaf", "max_features")})
        self.forest, self.leaves = fit_cache.cached(key, build)

    def leaves_of(self, inputs: torch.Tensor) -> np.ndarray:
        """Leaf of each of ``inputs`` (B, ...) in every tree, (B, K)."""
        return self.forest.apply(grid_features(inputs, self.index).cpu().numpy().astype(np.float32))

    def weights(self, inputs: torch.Tensor) -> torch.Tensor:
        """``w_i(x)`` of every training point for each of ``inputs`` (B, ...) → (B, n), float64."""
        return torch.as_tensor(leaf_weights(self.leaves, self.leaves_of(inputs)), device=inputs.device)


@register("maple")
class Maple(LocalSurrogate, AttributionMethod):
    """Coefficients of MAPLE's local linear model in the forest's supervised neighbourhood, [101].

    Attributes
    ----------
    forest_ : Forest
        The random forest fitted to the model's class probabilities on the train split, with the training
        points' leaves, features and scores (:meth:`fit`, once per model).
    input_shape_ : tuple of int
        Shape of one train input; the inputs explained must have it.
    """
    trains = True            # fits a random forest on the train split (companion survey's 'Training' column)
    model_agnostic = True    # queries the model's outputs only

    parameters = {**AttributionMethod.parameters,
                  "patch": Int("side of the grid cells whose per-channel means are the features φ of an image "
                               "(images only)", low=1),
                  "n_trees": Int("trees K of the random forest that defines the neighbourhood ([101])", low=1),
                  "min_samples_leaf": Int("fewest training points in a leaf of a tree", low=1),
                  "max_features": Float("fraction of the features each split of a tree considers", low=0,
                                        low_open=True, high=1),
                  "alpha": Float("ridge penalty α of the local linear model", low=0)}

    #: The intercepts ``b_x`` of the inputs explained so far, collected during :meth:`_run` only.
    def feature_index(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in (1, 3):
            raise ValueError(f"method {self.spec.id!r} explains (C, H, W) images or (F,) table rows, got one input "
                             f"of shape {tuple(x.shape)}")
        return grid_index(tuple(x.shape), self.params["patch"]).to(x.device)

    def _fit(self, model: nn.Module, train) -> None:
        """Fit the forest of ``model`` on the train split, seeded by :attr:`seed`."""
        x_train = train_inputs(f"method {self.spec.id!r}", model, train)
        index = self.feature_index(x_train[0])
        self.input_shape_ = tuple(x_train.shape[1:])
        self.forest_ = Forest(model, x_train, index, self.params, self.seed)

    def neighbourhoods(self, model: nn.Module, inputs: torch.Tensor, n_samples: int, seed: int,
                       pool: torch.Tensor) -> Iterator[Neighbourhood]:
        """For each input ``x``, the points of ``pool`` other than ``x`` that share a leaf with ``x``, with
        MAPLE's weights (leaf sizes counted within those points); ``n_samples`` and ``seed`` are unused."""
        forest = self.forest_
        pool_leaves = forest.leaves_of(pool)
        for x in inputs:
            others = ~(pool == x).reshape(len(pool), -1).all(1).cpu().numpy()
            weights = np.zeros(len(pool))
            weights[others] = leaf_weights(pool_leaves[others], forest.leaves_of(x[None]))[0]
            near = torch.as_tensor(np.nonzero(weights)[0], device=pool.device)
            yield Neighbourhood(grid_features(pool[near], forest.index), pool[near],
                                torch.as_tensor(weights, device=pool.device)[near])

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        check_input_shape(f"method {self.spec.id!r}", inputs, self.input_shape_)
        if len(inputs) == 0:
            return torch.zeros_like(inputs)
        x = inputs.detach()
        forest = self.forest_
        weights = forest.weights(x)
        near = weights > 0
        out = [self.surrogate_map(forest.features[near[n]], forest.scores[near[n], c], weights[n, near[n]],
                                  float(self.params["alpha"]), forest.index)
               for n, c in enumerate(target.tolist())]
        return torch.stack(out).to(device=inputs.device, dtype=inputs.dtype)
