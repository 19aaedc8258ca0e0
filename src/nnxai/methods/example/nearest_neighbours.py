"""Case-based explanation of a network by its nearest training examples (survey ref. [146]; Caruana,
Kangarloo, Dionisio, Sinha, Johnson, "Case-based explanation of non-case-based learning methods", AMIA 1999).

Caruana et al. explain a prediction of a trained network with the training cases that the *network* finds
most similar to the case explained: the network's hidden-layer representation is the case base's metric
("the method uses the trained model as a distance metric"), and the training cases nearest to the test case
in it are shown with their labels.  Here, as the survey puts it ("the examples that the model considers to
be most similar, in terms of latent representations"), the representation is the penultimate layer
``f(x) = model.embed(x)`` (the input of the linear head), and for every explained test input ``x_t`` the
method returns the ``k`` training points with the smallest

* ``euclidean``: ``||f(x_t) - f(x_i)||``, the paper's choice (Euclidean distance between the vectors of
  hidden-unit activations), or
* ``cosine``: ``1 - cos(f(x_t), f(x_i))``, which ignores the norm of the representation (our addition, for
  ReLU features whose norm grows with the input's contrast).

Every training example of ``ctx.train`` is a candidate (no subsampling); ties are broken by the lower train
position, so the ranking is deterministic.  The :class:`~nnxai.explanations.Examples` record holds, per
explained input, the ``k`` train positions nearest first and their ``scores``: the Euclidean distances, or
the cosine similarities (``extra["score"]`` says which); ``targets`` are the network's predictions and
``extra["neighbour_labels"]`` the neighbours' training labels (what :mod:`nnxai.metrics.nearest_neighbours`
compares with the prediction).
"""

from __future__ import annotations

import torch
from torch import nn

from nnxai.explanations import Examples
from nnxai.methods.base import ExampleSelector, explained_indices
from nnxai.methods.example._latent import cosine_similarities, euclidean_distances, latent_features
from nnxai.ops.cav import eval_mode
from nnxai.params import N_EXPLAIN, Choice, Int
from nnxai.registry import register

DISTANCES = ("euclidean", "cosine")
SCORES = {"euclidean": "euclidean_distance", "cosine": "cosine_similarity"}


def nearest(f_test: torch.Tensor, f_train: torch.Tensor, k: int, distance: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positions, scores)`` of the ``k`` training rows nearest to each test row, nearest first, ties to the
    lower position; scores are Euclidean distances or cosine similarities."""
    if distance == "euclidean":
        scores = euclidean_distances(f_test, f_train)
        order = torch.sort(scores, dim=1, stable=True).indices[:, :k]
    elif distance == "cosine":
        scores = cosine_similarities(f_test, f_train)
        order = torch.sort(-scores, dim=1, stable=True).indices[:, :k]
    else:
        raise ValueError(f"distance must be one of {list(DISTANCES)}, got {distance!r}")
    return order, torch.gather(scores, 1, order)


def predictions(model: nn.Module, x: torch.Tensor, device) -> torch.Tensor:
    """The network's predicted classes, in eval mode, without gradients."""
    with eval_mode(model), torch.no_grad():
        return torch.cat([model(xb.to(device)).argmax(1).cpu() for xb in x.split(256)])


@register("nearest_neighbours")
class NearestNeighbours(ExampleSelector):
    """The ``k`` training examples nearest to each explained input in the network's penultimate space [146].

    :meth:`fit` embeds the train split (``features_``, ``labels_``); :meth:`select` embeds the explained test
    inputs and ranks every training example by the configured distance.
    """

    parameters = {
        "n_explain": N_EXPLAIN,
        "k": Int("training examples returned per explained input, nearest first", low=1, at_most="train"),
        "distance": Choice("distance in the penultimate space: euclidean (Caruana et al.'s) or cosine", DISTANCES),
    }

    def _fit(self, model: nn.Module, train) -> None:
        self.features_ = latent_features(model, train.x)
        self.labels_ = torch.as_tensor(train.y).long().cpu()

    def select(self, model: nn.Module, ctx) -> Examples:
        self.check_fitted(model)
        p = self.params
        idx = explained_indices(len(ctx.test.x), p["n_explain"], ctx.seed)
        x = ctx.test.x[idx]
        f_test = latent_features(model, x, ctx.device)
        pred = predictions(model, x, ctx.device)
        k = min(int(p["k"]), len(self.features_))
        order, scores = nearest(f_test, self.features_, k, p["distance"])
        extra = {
            "distance": p["distance"],
            "score": SCORES[p["distance"]],
            "neighbour_labels": self.labels_[order].tolist(),
            "n_train": len(self.features_),
        }
        return Examples(indices=idx.tolist(), targets=pred.tolist(), examples=order.tolist(),
                        scores=scores.tolist(), extra=extra)
