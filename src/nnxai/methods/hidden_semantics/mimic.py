"""Model compression by a shallow mimic network, Ba & Caruana, "Do deep nets really need to be deep?",
NeurIPS 2014 (2nd survey [50]).

The paper trains a shallow network, one non-linear hidden layer (SNN-MIMIC), to regress the deep network's
*logits* (its log probabilities before the softmax), not the labels (Sec. 2.2):

    L(W, beta) = 1 / (2T) * sum_t || g(x_t; W, beta) - z_t ||_2^2,    g(x; W, beta) = beta f(W x + b),

with ``z_t`` the deep network's logits on input ``x_t`` and ``f`` the ReLU.  To speed up training it
factorises ``W = U V`` through a *linear bottleneck* of ``k`` units between the input and the hidden layer
(Sec. 2.3), and it adds unlabelled inputs, labelled by the deep network, to the training set (on CIFAR-10,
images of the 80M Tiny Images set).

Here: ``g(x) = W2 relu(W1 (V x') + b1) + b2`` with ``x'`` the flattened input standardised per pixel by the
train sample's mean and (regularised, :data:`STD_FLOOR`) standard deviation (the paper whitens its inputs),
``V`` the bottleneck
(``bottleneck`` units; 0 drops it and ``W1`` reads ``x'``), ``hidden`` ReLU units.  The training set is a
seeded sample of ``n_train`` train-split inputs plus ``n_augment`` perturbed copies of each, ``x + noise * s *
N(0, 1)`` with ``s`` the per-pixel standard deviation (our stand-in for the paper's unlabelled images: no other
data is used), all labelled once by the network's logits.  The labels of the train split are never read.

Where we had to choose: Adam (``lr``; the paper: SGD with momentum and a tuned schedule) for ``epochs`` passes
in minibatches of ``batch_size``, so that training takes seconds on a CPU; the widths are far smaller than
the paper's (its SNN-MIMIC nets have up to 400k hidden units).  The initialisation (PyTorch's default
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``), the sample, the perturbations and the minibatch order are drawn
from the run's seed only.

Record (:class:`~nnxai.explanations.SurrogateModel`): ``architecture`` (the layer sizes and training set-up),
the mimic's ``logits`` on every test input (``indices``), and its ``parameters`` (``input_mean``,
``input_std``, ``bottleneck.weight`` when there is one, ``hidden.weight``, ``hidden.bias``,
``output.weight``, ``output.bias``), from which :func:`rebuild` makes it again.  ``meta["train_loss"]`` holds
the mean minibatch L2 loss of each epoch.  The metric ``fidelity`` scores the agreement of its classes with the network's
on the test inputs and ``fidelity.label_accuracy`` its accuracy (:mod:`nnxai.metrics.rules`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nnxai.explanations import SurrogateModel
from nnxai.methods.base import UnitLabeler
from nnxai.ops.cav import eval_mode
from nnxai.params import Float, Int
from nnxai.registry import register


#: Standardisation ``(x - mean) / sqrt(var + STD_FLOOR * mean(var))``: the regulariser of the paper's ZCA
#: whitening, so that a pixel that never varies in the train sample (a digit's border) cannot blow a test
#: input up.
STD_FLOOR = 0.1


def mimic_loss(predicted: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Ba & Caruana's L2 regression on logits: ``1/(2T) sum_t ||g(x_t) - z_t||^2`` over the ``T`` rows."""
    return 0.5 * ((predicted - logits) ** 2).sum(1).mean()


class MimicNet(nn.Module):
    """The shallow mimic: standardise, [linear bottleneck], ReLU hidden layer, linear output."""

    def __init__(self, n_features: int, n_classes: int, hidden: int, bottleneck: int,
                 mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("input_mean", mean.reshape(-1).clone())
        self.register_buffer("input_std", std.reshape(-1).clone())
        width = n_features
        self.bottleneck = None
        if bottleneck:
            self.bottleneck = nn.utils.skip_init(nn.Linear, n_features, bottleneck, bias=False)
            width = bottleneck
        self.hidden = nn.utils.skip_init(nn.Linear, width, hidden)
        self.output = nn.utils.skip_init(nn.Linear, hidden, n_classes)

    def reset(self, generator: torch.Generator) -> "MimicNet":
        """PyTorch's default initialisation, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, drawn from ``generator``."""
        with torch.no_grad():
            for layer in (self.bottleneck, self.hidden, self.output):
                if layer is None:
                    continue
                bound = 1.0 / float(layer.in_features) ** 0.5
                layer.weight.uniform_(-bound, bound, generator=generator)
                if layer.bias is not None:
                    layer.bias.uniform_(-bound, bound, generator=generator)
        return self

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened inputs the layers read."""
        return (x.flatten(1) - self.input_mean) / self.input_std

    def layers(self, h: torch.Tensor) -> torch.Tensor:
        """``g`` on standardised inputs ``h``: [bottleneck], hidden ReLU layer, output."""
        if self.bottleneck is not None:
            h = self.bottleneck(h)
        return self.output(torch.relu(self.hidden(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.standardise(x))


def rebuild(record: SurrogateModel) -> MimicNet:
    """The mimic network a :class:`SurrogateModel` record of this method describes."""
    arch, params = record.architecture, record.parameters
    net = MimicNet(int(arch["n_features"]), int(arch["n_classes"]), int(arch["hidden"]), int(arch["bottleneck"]),
                   torch.as_tensor(params["input_mean"]), torch.as_tensor(params["input_std"]))
    net.load_state_dict({k: torch.as_tensor(v) for k, v in params.items()})
    return net.eval()


def _logits(model: nn.Module, x: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[s:s + batch_size].to(device)).float().cpu() for s in range(0, len(x), batch_size)])


def train_mimic(x: torch.Tensor, z: torch.Tensor, net: MimicNet, epochs: int, batch_size: int, lr: float,
                generator: torch.Generator) -> list[float]:
    """Fit ``net`` to the logits ``z`` of inputs ``x`` by :func:`mimic_loss` with Adam (the inputs standardised
    once, up front); the mean minibatch loss of each epoch."""
    with torch.no_grad():
        h = net.standardise(x).contiguous()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    history = []
    for _ in range(epochs):
        order = torch.randperm(len(h), generator=generator)
        total = 0.0
        for start in range(0, len(h), batch_size):
            rows = order[start:start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = mimic_loss(net.layers(h[rows]), z[rows])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(rows)
        history.append(total / len(h))
    return history


@register("mimic")
class Mimic(UnitLabeler):
    """A one-hidden-layer network (with the paper's optional linear bottleneck) trained by L2 regression on the
    network's logits over the train split and perturbed copies of it (Ba & Caruana [50])."""

    record_type = SurrogateModel
    trains = True
    parameters = {
        "hidden": Int("ReLU units of the mimic's one hidden layer", low=1),
        "bottleneck": Int("linear units between input and hidden layer, W = UV (the paper's Sec. 2.3); 0: none",
                          low=0),
        "n_train": Int("train-split inputs the mimic learns from (a seeded sample)", low=1, at_most="train"),
        "n_augment": Int("perturbed copies of each, labelled by the network (the paper adds unlabelled data); "
                         "0: none", low=0),
        "noise": Float("standard deviation of the perturbation, in units of each pixel's train-split standard "
                       "deviation", low=0.0),
        "epochs": Int("passes over the training set", low=1),
        "batch_size": Int("inputs per Adam step (and per forward pass of the network)", low=1),
        "lr": Float("Adam's learning rate", low=0.0, low_open=True),
    }
    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})

    def _run(self, ctx):
        record = self.label_units(ctx.model, ctx)
        return record, len(record.indices)

    def _fit(self, model: nn.Module, train) -> None:
        """Label the training set (the sample and its perturbed copies) with the network's logits and fit the
        mimic: ``mimic_`` (in eval mode), ``train_loss_``, ``fit_inputs_``."""
        p = self.params
        device = next(model.parameters()).device
        generator = torch.Generator().manual_seed(int(self.seed))
        n_all = len(train.x)
        rows = torch.randperm(n_all, generator=generator)[:min(p["n_train"], n_all)].sort().values
        x = train.x[rows].detach().float().cpu().clone()
        var = x.flatten(1).var(0, unbiased=False)
        mean, std = x.flatten(1).mean(0), (var + STD_FLOOR * var.mean()).sqrt().clamp_min(1e-6)
        copies = [x + p["noise"] * std.reshape(x.shape[1:]) * torch.randn(x.shape, generator=generator)
                  for _ in range(p["n_augment"])]
        fit_x = torch.cat([x, *copies]) if copies else x
        with eval_mode(model):
            z = _logits(model, fit_x, p["batch_size"], device)
        net = MimicNet(int(x[0].numel()), int(z.shape[1]), p["hidden"], p["bottleneck"], mean, std).reset(generator)
        self.train_loss_ = train_mimic(fit_x, z, net, p["epochs"], p["batch_size"], p["lr"], generator)
        self.mimic_, self.fit_inputs_ = net.eval(), (int(len(x)), int(len(fit_x)))

    def label_units(self, model: nn.Module, ctx) -> SurrogateModel:
        """The fitted mimic (:meth:`fit` first) as a record, with its logits on every test input."""
        self.check_fitted(model)
        p, net = self.params, self.mimic_
        with eval_mode(model):
            teacher = _logits(model, ctx.test.x, p["batch_size"], ctx.device)
        with torch.no_grad():
            logits = torch.cat([net(ctx.test.x[s:s + p["batch_size"]].float().cpu())
                                for s in range(0, len(ctx.test.x), p["batch_size"])])
        arch = {"type": "one-hidden-layer ReLU mimic", "input_shape": [int(s) for s in ctx.test.x.shape[1:]],
                "n_features": int(net.input_mean.numel()), "bottleneck": int(p["bottleneck"]),
                "hidden": int(p["hidden"]), "n_classes": int(logits.shape[1]), "loss": "L2 on logits",
                "n_train": self.fit_inputs_[0], "n_fit_inputs": self.fit_inputs_[1],
                "n_parameters": int(sum(t.numel() for t in net.parameters())),
                "network_parameters": int(sum(t.numel() for t in model.parameters()))}
        params = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
        meta = {"train_loss": list(self.train_loss_),
                "test_logit_mse": float(((logits - teacher) ** 2).mean()),
                "test_agreement": float((logits.argmax(1) == teacher.argmax(1)).double().mean())}
        return SurrogateModel(architecture=arch, indices=np.arange(len(ctx.test.x)), logits=logits.numpy(),
                              parameters=params, meta=meta)
