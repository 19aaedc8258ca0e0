"""The network as the oracle of the pedagogical tree extractors (Krishnan et al. [90], DecText [91]): the
class probabilities of feature vectors of the extractor's space (:func:`nnxai.ops.feature_space.feature_space`:
tabular inputs as they are, a concept table rendered to images by the data set, as TREPAN's queries [89]),
with a count of the queries asked."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nnxai.ops.feature_space import BATCH, FeatureSpace, feature_space


class Oracle:
    """``probs(features, rng)``: the network's softmax outputs on feature vectors; ``classes``: their argmax.

    Parameters
    ----------
    model : nn.Module
        The explained network (evaluated in eval mode; its mode is restored).
    ctx : ExplainContext
        Gives the data set (tabular inputs or a renderable concept table) and the training features.
    """

    def __init__(self, model: nn.Module, ctx) -> None:
        self.model, self.info = model, ctx.info
        self.space: FeatureSpace = feature_space(model, ctx)
        self.n_queries = 0

    @torch.no_grad()
    def probs(self, features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        features = np.asarray(features, dtype=np.float64)
        self.n_queries += len(features)
        device = next(iter(self.model.parameters()), torch.empty(0)).device
        was_training = self.model.training
        self.model.eval()
        out = []
        try:
            for i in range(0, len(features), BATCH):
                chunk = features[i:i + BATCH]
                if self.space.kind == "concepts":
                    inputs = torch.as_tensor(self.info.render(chunk, rng)[0], dtype=torch.float32)
                else:
                    inputs = torch.as_tensor(chunk, dtype=torch.float32).reshape(-1, *self.info.input_shape)
                out.append(torch.softmax(self.model(inputs.to(device)).double(), dim=1).cpu().numpy())
        finally:
            self.model.train(was_training)
        n_classes = int(self.info.n_classes)
        return np.concatenate(out) if out else np.zeros((0, n_classes))

    def classes(self, features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.argmax(self.probs(features, rng), axis=1).astype(np.int64)
