"""Toy models and contexts for unit tests: hand-set weights or seeded initialisation, never checkpoints.

Import from a test file with ``from toy_models import ...`` (pytest puts ``tests/methods`` on
``sys.path``: see ``pythonpath`` in pyproject.toml).

- :class:`LinearModel`: ``logits = W x + b`` with hand-set ``W`` and ``b`` (closed-form gradients).
- :class:`RegionSumModel`: two classes, logit 1 = ``scale`` × sum of the inputs inside a known region,
  logit 0 = 0 (planted ground truth for perturbation and localisation metrics).
- :func:`tiny_convnet`, :func:`tiny_mlp`: the project's own :class:`~nnxai.models.networks.ConvNet` and
  :class:`~nnxai.models.networks.MLP` at toy widths, initialised from a seed.
- :func:`train_shapes_cnn`: a small ConvNet trained on the real ``shapes`` generator (seconds).
- :func:`toy_context`: an :class:`~nnxai.methods.base.ExplainContext` over given tensors.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nnxai.data import DatasetInfo, PreparedSplit, shapes
from nnxai.methods.base import ExplainContext
from nnxai.models.networks import MLP, ConvNet


class LinearModel(nn.Module):
    """``logits = W · flatten(x) + b`` with the given ``W`` (n_classes, n_inputs) and ``b``."""

    architecture = "mlp"

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        weight = torch.as_tensor(weight, dtype=torch.float32)
        self.classifier = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.classifier.weight.copy_(weight)
            self.classifier.bias.copy_(torch.zeros(weight.shape[0]) if bias is None
                                       else torch.as_tensor(bias, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x.flatten(1))


class RegionSumModel(nn.Module):
    """Two classes: logit 1 = ``scale`` · Σ x over ``region`` (broadcast over channels), logit 0 = 0."""

    architecture = "cnn"

    def __init__(self, region: torch.Tensor, scale: float = 1.0):
        super().__init__()
        self.register_buffer("region", torch.as_tensor(region, dtype=torch.float32))
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = self.scale * (x * self.region).flatten(1).sum(1)
        return torch.stack([torch.zeros_like(evidence), evidence], dim=1)


def tiny_convnet(seed: int = 0, in_channels: int = 3, n_classes: int = 3, activation: str = "relu") -> ConvNet:
    """The project's ConvNet (conv-act-pool ×2, conv-act, GAP, linear) at widths (4, 6, 8), seeded, eval mode."""
    torch.manual_seed(seed)
    return ConvNet(in_channels, n_classes, widths=(4, 6, 8), activation=activation).eval()


def tiny_mlp(seed: int = 0, n_features: int = 6, n_classes: int = 3, activation: str = "relu") -> MLP:
    """The project's MLP with hidden widths (8, 6), seeded, eval mode."""
    torch.manual_seed(seed)
    return MLP(n_features, n_classes, hidden=(8, 6), activation=activation).eval()


def toy_context(model: nn.Module, x_train: torch.Tensor, x_test: torch.Tensor, n_classes: int,
                seed: int = 0, masks: np.ndarray | None = None, mask_names: list[str] | None = None,
                ) -> ExplainContext:
    """A context whose splits hold the given inputs (labels 0); ``kind`` follows the input rank.  Masks are
    named by the split's meta when ``mask_names`` is given; the toy data set declares those names, or the
    ``shapes`` set's channels."""
    kind = "image" if x_test.dim() == 4 else "tabular"
    declared = tuple(mask_names or (shapes.MASK_NAMES if masks is not None else ()))
    info = DatasetInfo("toy", kind, n_classes, tuple(x_test.shape[1:]), masks is not None, False, "test toy",
                       mask_names=declared)
    meta = {"mask_names": mask_names} if mask_names is not None else {}

    def split(x, m=None):
        return PreparedSplit(x=x, y=torch.zeros(len(x), dtype=torch.long), masks=m, meta=meta)

    return ExplainContext(model=model, dataset="toy", model_id="toy", info=info, train=split(x_train),
                          test=split(x_test, masks), seed=seed)


def train_shapes_cnn(n_train: int = 3000, epochs: int = 6, seed: int = 0):
    """A small ConvNet trained on generated shapes images (Adam, one-cycle learning rate up to 0.01, batches
    of 32): ``(model, train, test)``, the splits as the generator's dicts (1,000 test images)."""
    train, test = shapes.generate(n_train, [seed, 0]), shapes.generate(1000, [seed, 2])
    torch.manual_seed(seed)
    net = ConvNet(3, 2, widths=(8, 16, 32))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    batches = torch.arange(n_train).split(32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=epochs * len(batches))
    x, y = torch.from_numpy(train["x"]), torch.from_numpy(train["y"])
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(n_train, generator=order).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
            schedule.step()
    return net.eval(), train, test
