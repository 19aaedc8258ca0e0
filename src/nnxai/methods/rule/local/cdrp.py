"""CDRP: critical data routing paths by distillation guided routing (survey ref. [77]).

Wang, Su, Zhang & Hu, "Interpret neural networks by identifying critical data routing paths", CVPR 2018,
Sec. 3.  Every output channel ``c`` of every layer ``k`` gets a scalar *control gate* ``λ_k,c >= 0`` that
multiplies the channel's output (after its nonlinearity); for one input ``x`` the gates solve

    min_Λ  L(f_θ(x), f_θ(x; Λ)) + γ Σ_k ||λ_k||_1     s.t.  λ_k >= 0,                        (DGR)

where ``f_θ(x; Λ)`` is the gated network and ``L`` the distillation loss, the cross entropy
``−Σ_c p_c log q_c`` between the original network's class probabilities ``p`` (the soft target) and the gated
network's ``q``.  The gates start at 1 (the gated network *is* the original one) and follow ``steps``
iterations of SGD with momentum, each followed by the projection onto ``λ >= 0`` (so, for a gate at 0,
the projected subgradient step of the L1 term: gates whose channels the prediction does not need reach
exactly 0).  The **critical data routing path** of ``x`` is the set of channels with a positive gate (the
"critical nodes"); the concatenated gates are its CDRP representation.

Choices: the gated layers are the model's unit layers (``unit_layers()``: each conv layer's activation, the
layers the paper gates), on every input independently but optimised together in batches (the loss is a
sum over inputs, so each input's gates get exactly their own gradient); the gradients are taken with respect
to the gates only (``torch.autograd.grad``), so the network's parameters never receive one.  ``steps``,
``lr``, ``momentum`` and ``gamma`` come from the config: 30 iterations of SGD with learning rate 0.1,
momentum 0.9 and γ = 0.05, our reading of the paper's setting (at these values a gate with no distillation
gradient falls from 1 to 0 in 29 steps, so the budget is just enough to close every unneeded channel).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import nn

from nnxai.explanations import LocalRules
from nnxai.methods.base import ExplainContext, LocalRuleMethod
from nnxai.ops.cav import eval_mode
from nnxai.params import BATCH_SIZE, Float, Int
from nnxai.registry import register


def gated_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The modules whose output channels carry gates: the model's unit layers (conv activations)."""
    if not hasattr(model, "unit_layers"):
        raise ValueError(f"CDRP gates the unit layers of a CNN; {type(model).__name__} names none (unit_layers())")
    return dict(model.unit_layers())


@contextmanager
def gated(model: nn.Module, gates: dict[str, torch.Tensor]) -> Iterator[None]:
    """Multiply the output of every gated layer by its gates ``(N, C)`` (one row per input of the batch)
    for the block; the hooks are removed after it."""
    layers = gated_layers(model)
    handles = []
    for name, gate in gates.items():
        def hook(_module, _inputs, output, gate=gate):
            return output * gate.reshape(*gate.shape, *([1] * (output.dim() - 2))).to(output.dtype)
        handles.append(layers[name].register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def channel_counts(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Output channels of every gated layer (one forward pass of one input)."""
    counts, handles = {}, []
    for name, module in gated_layers(model).items():
        handles.append(module.register_forward_hook(
            lambda _m, _i, out, name=name: counts.__setitem__(name, int(out.shape[1]))))
    try:
        with eval_mode(model):
            model(example[:1])
    finally:
        for handle in handles:
            handle.remove()
    return counts


def route(model: nn.Module, x: torch.Tensor, counts: dict[str, int], steps: int, lr: float, momentum: float,
          gamma: float) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Distillation guided routing (DGR) of a batch: ``(gates per layer (N, C), original probabilities,
    gated logits)``; ``model`` must be in eval mode."""
    with torch.no_grad():
        target = torch.softmax(model(x), dim=1)
    gates = {name: torch.ones(len(x), c, device=x.device, requires_grad=True) for name, c in counts.items()}
    velocity = {name: torch.zeros_like(g) for name, g in gates.items()}
    for _ in range(steps):
        with gated(model, gates):
            logits = model(x)
        loss = -(target * torch.log_softmax(logits, dim=1)).sum() + gamma * sum(g.sum() for g in gates.values())
        grads = torch.autograd.grad(loss, list(gates.values()))
        with torch.no_grad():
            for (name, gate), grad in zip(gates.items(), grads):
                velocity[name].mul_(momentum).add_(grad)
                gate.sub_(lr * velocity[name]).clamp_(min=0.0)
    with torch.no_grad(), gated(model, gates):
        logits = model(x)
    return {name: g.detach() for name, g in gates.items()}, target, logits


@register("cdrp")
class CDRP(LocalRuleMethod):
    """CDRP [77]: per-input sparse non-negative channel gates learnt by distillation with an L1 penalty."""

    modalities = frozenset({"image"})
    architectures = frozenset({"cnn"})
    parameters = {
        **LocalRuleMethod.parameters,
        "batch_size": BATCH_SIZE,
        "steps": Int("SGD iterations of distillation guided routing (T)", low=1),
        "lr": Float("learning rate of the gates' SGD", low=0.0, low_open=True),
        "momentum": Float("momentum of the gates' SGD", low=0.0, high=1.0, high_open=True),
        "gamma": Float("γ: weight of the L1 penalty on the gates in (DGR)", low=0.0),
    }

    def explain_inputs(self, model: nn.Module, ctx: ExplainContext, indices: np.ndarray) -> LocalRules:
        device = next(model.parameters()).device
        inputs = ctx.test.x[indices]
        counts = channel_counts(model, inputs.to(device))
        p = self.params
        entries, targets = [], []
        class_names = list(ctx.test.meta.get("class_names") or ctx.train.meta.get("class_names") or
                           [str(c) for c in range(int(ctx.info.n_classes))])
        with eval_mode(model):
            for batch in inputs.split(p["batch_size"]):
                gates, target, logits = route(model, batch.to(device), counts, p["steps"], p["lr"], p["momentum"],
                                              p["gamma"])
                for i in range(len(batch)):
                    original, kept = int(target[i].argmax()), int(logits[i].argmax())
                    targets.append(original)
                    entries.append(_entry({name: g[i].cpu().numpy() for name, g in gates.items()}, original, kept,
                                          class_names))
        names = [f"{layer}:{c}" for layer, n in counts.items() for c in range(n)]
        return LocalRules(indices=[int(i) for i in indices], targets=targets, explanations=entries,
                          feature_names=names, class_names=class_names, feature_space="channels",
                          extra={"layers": list(counts), "channels": list(counts.values())})


def _entry(gates: dict[str, np.ndarray], original: int, kept: int, class_names: list) -> dict:
    """One input's record: the gates, the critical channels per layer, what the gated network predicts."""
    critical = {name: np.flatnonzero(g > 0).tolist() for name, g in gates.items()}
    parts = [f"{name} {len(c)}/{len(gates[name])} {c}" for name, c in critical.items()]
    same = "keeps" if kept == original else "changes"
    return {"text": f"critical path: {'; '.join(parts)} (the gated network {same} class {class_names[original]}"
                    f"{'' if kept == original else ' -> ' + class_names[kept]})",
            "conditions": [], "gates": {name: [float(v) for v in g] for name, g in gates.items()},
            "critical": critical, "prediction_gated": kept}
