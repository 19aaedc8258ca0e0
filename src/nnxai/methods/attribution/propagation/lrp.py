"""Layer-wise relevance propagation (LRP), Bach et al. [113], with the z^B input rule of deep Taylor decomposition.

The survey's Table IV writes LRP as a modified gradient, ``x_i · ∂^g S_c/∂x_i`` with ``g = σ(z)/z``: the
relevance ``R_c = S_c(x)`` of the explained logit is sent back layer by layer, every neuron passing its
relevance to its inputs in proportion to their contributions ``z_ij = a_i w_ij`` ([113], Eq. 56–60):

* hidden ``Linear``/``Conv2d`` layers, ``rule="epsilon"``: ``R_i = Σ_j z_ij / (z_j + ε·sign z_j) · R_j``
  ([113] Eq. 58); ``rule="alpha_beta"``: ``R_i = Σ_j (α z_ij⁺ / z_j⁺ − β z_ij⁻ / z_j⁻) R_j`` with
  ``β = α − 1`` ([113] Eq. 60; biases split into ``b⁺`` and ``b⁻``);
* the first weighted layer, ``input_rule="zb"``: the z^B rule for inputs bounded by ``[l, h]`` (Montavon
  et al. 2017, "Explaining nonlinear classification decisions with deep Taylor decomposition", Eq. 12),
  ``R_i = Σ_j (x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻) / Σ_i' (…) · R_j``; ``input_rule="epsilon"``: as hidden ε;
* ``MaxPool2d``: winner-take-all ([113] Sec. 4.2.1); ``AdaptiveAvgPool2d``/``AvgPool2d``: a linear layer
  with positive weights, always the ε-rule (an αβ split would multiply its relevance by α, as a pool has no
  negative part); ``ReLU``, ``Flatten``: relevance passes unchanged;
* an element-wise gate ``y = x ∘ g(x)`` (the interpretable CNN's template mask [70], :mod:`._lrp_rules`):
  *signal-take-all*, the rule of Arras et al. (2017, "Explaining recurrent neural network predictions in
  sentiment analysis", for the multiplicative gates of LSTMs): the gate gets no relevance and the signal
  ``x_i`` all of ``R_i``, i.e. relevance passes unchanged, as through a ReLU.  Where the template is
  negative the ReLU after the mask zeroes the unit, so it holds no relevance to pass.

Captum's ``LRP`` has the ε-rule and α=1, β=0 only, so the pass is written here
(:mod:`._lrp_rules`): forward replay of the model's chain of layers, then one vectorised rule per layer
(the gradient trick ``R_in = a ⊙ ∂(z · s)/∂a``, ``s = R_out / z``).  With ``rule="epsilon"`` and
``input_rule="epsilon"`` it equals Captum's ``LRP`` with ``EpsilonRule`` on every layer (tested).

Bounds of z^B.  :meth:`LRP.fit` learns the data range of the train split: per feature (table) or per
channel (image) ``[min, max]``, Montavon et al.'s ``l_i, h_i``, the box the inputs live in.  Being read from
the data, it moves with it: data shifted by a constant get a box shifted by the same constant, as input
invariance [143] asks of a reference learnt from the data (a fixed pixel box ``[0, 1]`` would not move,
and LRP would fail that test for a reason that is not the method's).  The record keeps them in
``meta["bounds"]``.  Each input widens its own box to contain it (``l = min(l, x)``, ``h = max(h, x)``), so
every numerator term is ≥ 0.

Conservation.  ``Σ_i R_i = S_c(x)`` holds exactly for z^B and for αβ only when the biases are zero (and, for
αβ, every neuron has contributions of both signs); the ε-rule loses the ε-share.  The ``conservation``
metric measures the gap.  A gate conserves relevance, so these statements hold for the interpretable CNN as
for the base ConvNet (tested).
"""

from __future__ import annotations

import torch
from torch import nn

from nnxai.methods.attribution.propagation._lrp_rules import (AVERAGING, IDENTITY, WEIGHTED, WalksLayers,
                                                              alpha_beta_rule, epsilon_rule, is_gate, layer_chain,
                                                              replay, winner_take_all, zb_rule)
from nnxai.methods.base import AttributionMethod
from nnxai.ops.maps import channel_range
from nnxai.params import Choice, Float
from nnxai.registry import register

RULES = ("epsilon", "alpha_beta")
INPUT_RULES = ("zb", "epsilon")


@register("lrp")
class LRP(WalksLayers, AttributionMethod):
    """Layer-wise relevance propagation [113] of the class logit: ε or αβ rule, z^B or ε at the input."""

    parameters = {**AttributionMethod.parameters,
                  "rule": Choice("rule of the hidden weighted layers: ε ([113] Eq. 58) or αβ ([113] Eq. 60)", RULES),
                  "epsilon": Float("stabiliser ε of the ε-rule ([113] Eq. 58; also average pools and "
                                   "input_rule 'epsilon')", low=0, low_open=True),
                  "alpha": Float("α of the αβ-rule, β = α − 1 ([113] Eq. 60); read only by rule 'alpha_beta'",
                                 low=1),
                  "input_rule": Choice("rule of the first weighted layer: z^B (Montavon et al. 2017 Eq. 12) "
                                       "or ε", INPUT_RULES)}
    activations = frozenset({"relu"})
    rules_source = "LRP [113] (and Arras et al.'s signal-take-all for gates)"

    def _fit(self, model: nn.Module, train) -> None:
        self.bounds_ = channel_range(train.x)

    def _run(self, ctx):
        record, n_inputs = super()._run(ctx)
        if self.params["input_rule"] == "zb":
            low, high = self.bounds_
            record.meta["bounds"] = {"low": [float(v) for v in low], "high": [float(v) for v in high]}
        return record, n_inputs

    def input_bounds(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(l, h)`` shaped like ``inputs``: the fitted data range, widened to contain each input."""
        if not hasattr(self, "bounds_"):
            raise RuntimeError(f"method {self.spec.id!r}: the z^B input bounds are learnt from the train split: "
                               "call fit(model, train_split) first")
        low, high = self.bounds_
        view = (1, len(low)) + (1,) * (inputs.dim() - 2)
        low = low.reshape(view).to(device=inputs.device, dtype=inputs.dtype)
        high = high.reshape(view).to(device=inputs.device, dtype=inputs.dtype)
        return torch.minimum(low, inputs), torch.maximum(high, inputs)

    def attribute(self, model: nn.Module, inputs: torch.Tensor, target: torch.Tensor,
                  baselines: torch.Tensor | None = None) -> torch.Tensor:
        inputs = inputs.detach()
        chain = layer_chain(model, inputs, f"method {self.spec.id!r}")
        size = self.params["batch_size"]
        return torch.cat([self._relevance(chain, inputs[s:s + size], target[s:s + size])
                          for s in range(0, len(inputs), size)])

    def _relevance(self, chain, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            acts = replay(chain, x)
        logits = acts[-1]
        relevance = torch.zeros_like(logits)
        rows = torch.arange(len(x), device=x.device)
        relevance[rows, target] = logits[rows, target]
        first = next((k for k, layer in enumerate(chain) if isinstance(layer.module, WEIGHTED)), None)
        low = high = None
        if self.params["input_rule"] == "zb" and first is not None:
            before = [type(layer.module).__name__ for layer in chain[:first]
                      if not isinstance(layer.module, (nn.Flatten, nn.Identity, nn.Dropout))]
            if before:
                raise ValueError(f"method {self.spec.id!r}: input_rule 'zb' needs the first weighted layer to see "
                                 f"the input, but {before} come before it")
            low, high = (b.reshape(acts[first].shape) for b in self.input_bounds(x))
        for k in range(len(chain) - 1, -1, -1):
            module, a = chain[k].module, acts[k]
            relevance = relevance.reshape(acts[k + 1].shape)
            if isinstance(module, IDENTITY) or is_gate(module):     # a gate: signal-take-all (module doc)
                relevance = relevance.reshape(a.shape)
            elif isinstance(module, nn.MaxPool2d):
                relevance = winner_take_all(module, a, relevance)
            elif k == first and low is not None:
                relevance = zb_rule(module, a, relevance, low, high)
            elif isinstance(module, WEIGHTED) and self.params["rule"] == "alpha_beta" and k != first:
                relevance = alpha_beta_rule(module, a, relevance, float(self.params["alpha"]))
            elif isinstance(module, WEIGHTED + AVERAGING):
                relevance = epsilon_rule(module, a, relevance, float(self.params["epsilon"]))
        return relevance.reshape(x.shape).detach()
