"""DAPr: the deep attribution prior, Weinberger, Janizek & Lee, NeurIPS 2020 (the survey's [121], Sec. IV-C).

A prediction network ``f_θ`` and a *prior network* ``g_β`` are trained together.  ``g_β`` reads, for each
input feature ``j``, a vector of meta-features ``m_j`` (what is known about the feature beforehand: gene
annotations in [121]; the planted ``annotation`` column and two noise columns on ``planted``) and outputs
one number, the importance the feature should have.  The joint objective of [121] (Sec. 3, Eq. 2-3) is

    L(θ, β) = L_pred(f_θ(X), y) + λ · Ω(Φ(θ, X), g_β(M)),
    Ω = Σ_j (Φ̄_j − g_β(m_j))²,      Φ̄_j = (1/n) Σ_i |φ_j(θ, x_i)|,

the squared difference, per feature, between the network's global attribution (the mean magnitude of
its per-input attributions ``φ`` over the batch) and the prior's output; both ``θ`` and ``β`` get its
gradient (the attribution ``φ`` is differentiated through, double back-propagation).  The prior thus learns
the map meta-feature → importance that the data support, and biases the network towards it.

Where we chose (the paper leaves these open or tunes them):

- **Attribution** ``φ``: expected gradients (EG, Erion et al. 2021, the attribution of [121])
  ``φ_j(x) = E_{x'~D, α~U(0,1)} [(x_j − x'_j) ∂f_y(x' + α(x − x'))/∂x_j]`` of the logit of the true class,
  references ``x'`` drawn from the train split; during training with ``n_samples`` draws per input and
  step (1, as Erion et al. do: the expectation is averaged over the batch and the steps), which costs one
  extra forward and a double backward, the same as gradient × input, so we keep the paper's attribution.
- **Normalisation**: ``Φ̄`` is divided by its mean over the features, ``Φ̃_j = Φ̄_j / ((1/p) Σ_k Φ̄_k)``,
  so the prior learns *relative* importance (mean 1) and not the logit scale, which drifts in training;
  Ω is the mean over the ``p`` features instead of the sum, so that ``weight`` (λ) does not scale with p.
  λ = 1 puts Ω (O(1) at initialisation) on the scale of the cross-entropy (ln 2 at initialisation).
- **Prior network**: an MLP ``meta-features → 1`` (``build_network("mlp", n_classes=1)``) with hidden
  widths ``prior_hidden``; [5, 3] as in the authors' released AML experiment.  It is initialised from the
  run's seed, trained by the same Adam optimiser as the network (``parameters_to_train``) and saved in the
  checkpoint as the extra module ``prior`` (``model.extras["prior"]``).

The network's own explanation (``dapr``, below) is the attribution the regulariser uses, EG, per explained
input (with more references), and the prior's importance of every feature in the record's ``meta``; the
metric ``prior_agreement`` (:mod:`nnxai.metrics.prior_agreement`) scores both against the planted truth.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from nnxai.active.base import ActiveMethod, register_active
from nnxai.methods.base import AttributionMethod
from nnxai.metrics.map_similarity import spearman_rows
from nnxai.models.networks import build_network
from nnxai.ops.noise import input_seed, seeded
from nnxai.params import Float, Int, List
from nnxai.registry import register

#: Name of the prior network among the checkpoint's extra modules.
PRIOR = "prior"
#: Salts of the seeds: the prior's initialisation and the references drawn in training / explaining.
_SALT_INIT, _SALT_DRAWS, _SALT_EXPLAIN = 7717, 7719, "dapr"


def expected_gradients(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, references: torch.Tensor,
                       alphas: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """EG attributions of the logit of class ``target``, the Monte-Carlo mean over ``k`` draws per input.

    Parameters
    ----------
    model : nn.Module
        Maps ``(N, F)`` inputs to logits.
    inputs : torch.Tensor
        ``(N, F)`` inputs ``x`` (left untouched).
    target : torch.Tensor
        ``(N,)`` classes.
    references : torch.Tensor
        ``(N, k, F)`` references ``x'`` (rows of the train split).
    alphas : torch.Tensor
        ``(N, k)`` points ``α`` on the straight line from ``x'`` to ``x``.
    create_graph : bool
        Keep the graph of the gradient, so that the attribution can be differentiated with respect to the
        model's parameters (the training penalty); ``False``: a detached attribution.

    Returns
    -------
    torch.Tensor
        ``(N, F)``: ``(1/k) Σ_s (x − x'_s) ⊙ ∂f_y(x'_s + α_s (x − x'_s))/∂x``.
    """
    n, k = alphas.shape
    x = inputs.detach().flatten(1)[:, None, :]
    delta = x - references
    points = (references + alphas[..., None] * delta).reshape(n * k, -1).detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(points.reshape(n * k, *inputs.shape[1:]))
        score = logits.gather(1, target.repeat_interleave(k)[:, None]).sum()
        grads, = torch.autograd.grad(score, points, create_graph=create_graph)
    return (grads.reshape(n, k, -1) * delta).mean(1).reshape(inputs.shape)


def prior_penalty(attributions: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Ω of [121] Eq. 2 with the mean-normalised global attribution (module docstring): the mean over the
    features of ``(Φ̃_j − g(m_j))²``, ``Φ̃_j = Φ̄_j / mean_k Φ̄_k``, ``Φ̄_j = mean_i |φ_ij|``.

    Parameters
    ----------
    attributions : torch.Tensor
        ``(N, p)`` per-input attributions ``φ`` (or ``(N, ...)``, flattened to the ``p`` features).
    prior : torch.Tensor
        ``(p,)`` prior outputs ``g_β(m_j)``.
    """
    glob = attributions.flatten(1).abs().mean(0)
    normalised = glob / glob.mean().clamp_min(torch.finfo(glob.dtype).tiny)
    if normalised.shape != prior.shape:
        raise ValueError(f"{normalised.numel()} features attributed, the prior scores {prior.numel()}")
    return (normalised - prior).square().mean()


def prior_importance(prior: nn.Module, meta_features: Any) -> torch.Tensor:
    """``g_β(m_j)`` of every feature ``j``: ``(p,)``, detached, on the prior's device."""
    param = next(prior.parameters())
    if not isinstance(meta_features, torch.Tensor):
        meta_features = np.array(meta_features)           # a writable copy of a (read-only) table
    meta = torch.as_tensor(meta_features, dtype=param.dtype, device=param.device)
    with torch.no_grad():
        return prior(meta).reshape(-1)


def _meta_problem(info: Any) -> str | None:
    meta = getattr(info, "meta_features", None)
    if meta is None:
        return f"{info.name} has no meta-features describing its input features (the prior network's input)"
    n_features = int(np.prod(info.input_shape))
    if np.ndim(meta) != 2 or np.shape(meta)[0] != n_features:
        return f"{info.name}'s meta-features have shape {np.shape(meta)}, expected ({n_features}, n_meta)"
    return None


@register_active
class DAPr(ActiveMethod):
    """Deep attribution prior [121]: a prior network on the features' meta-features, trained jointly with
    the network through the penalty ``λ Ω`` of Eq. 2-3 (see the module docstring for the choices)."""

    id = "dapr"
    description = "DAPr: a prior network on meta-features trained jointly with the network [121]"
    architectures = frozenset({"mlp"})
    parameters = {
        "weight": Float("λ of [121] Eq. 3: weight of the attribution-prior penalty Ω", low=0.0),
        "prior_hidden": List("hidden widths of the prior MLP g_β (meta-features → importance)",
                             Int("units", low=1, high=4096), min_items=0, max_items=16),
        "n_samples": Int("expected-gradients references per input and step in training (Erion et al.: 1)",
                         low=1),
    }

    @classmethod
    def why_not(cls, info: Any) -> str | None:
        return _meta_problem(info)

    def setup(self, model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], info: Any,
              device: torch.device, seed: int) -> None:
        reason = _meta_problem(info)
        if reason:
            raise ValueError(f"dapr cannot train on {info.name}: {reason}")
        meta = np.array(info.meta_features, dtype=np.float32)   # a writable copy
        with seeded(seed + _SALT_INIT):       # the prior's initial weights from the run's seed alone
            self.prior = build_network("mlp", n_features=int(meta.shape[1]), n_classes=1,
                                       hidden=[int(h) for h in self.params["prior_hidden"]], activation="relu")
        self.prior.to(device)
        self.meta = torch.as_tensor(meta, device=device)
        self.background = train[0].to(device).flatten(1)
        self.generator = torch.Generator().manual_seed(seed + _SALT_DRAWS)
        truth = getattr(info, "feature_importance", None)
        self.truth = None if truth is None else torch.as_tensor(np.array(truth, dtype=np.float64))
        self._sum, self._steps = torch.zeros((), device=device), 0

    def draws(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """References ``(n, k, F)`` from the train split and ``α`` ``(n, k)`` for one batch (own generator)."""
        k = self.params["n_samples"]
        rows = torch.randint(len(self.background), (n, k), generator=self.generator)
        alphas = torch.rand((n, k), generator=self.generator)
        return self.background[rows.to(self.background.device)], alphas.to(self.background.device)

    def penalty(self, model, inputs, targets, logits):
        references, alphas = self.draws(len(inputs))
        phi = expected_gradients(model, inputs, targets, references, alphas, create_graph=True)
        omega = prior_penalty(phi, self.prior(self.meta).reshape(-1))
        self._sum, self._steps = self._sum + omega.detach(), self._steps + 1
        return self.params["weight"] * omega

    def importance(self) -> torch.Tensor:
        """The prior's current importance ``g_β(m_j)`` of every feature (detached)."""
        return prior_importance(self.prior, self.meta)

    def after_epoch(self, model, epoch):
        record = {"prior_penalty": float(self._sum) / max(self._steps, 1)}
        self._sum, self._steps = torch.zeros_like(self._sum), 0
        if self.truth is not None:   # a diagnostic only: the truth never enters the loss
            rho = spearman_rows(self.importance().cpu()[None], self.truth[None])[0]
            record["prior_rank_truth"] = float(rho)
        return record

    def finish(self, model, train, val, device):
        return {"prior_importance": [float(v) for v in self.importance().cpu()]}

    def extras(self) -> dict[str, nn.Module]:
        prior = getattr(self, "prior", None)
        return {} if prior is None else {PRIOR: prior}


@register("dapr")
class DAPrAttribution(AttributionMethod):
    """The DAPr network's own explanation: the expected-gradients attribution its regulariser uses, per
    explained input, and, in ``meta["prior_importance"]``, the prior network's ``g_β(m_j)`` per feature.

    Each input draws its ``n_samples`` references (rows of the train split, stored by :meth:`fit`) and
    points ``α`` from its own generator, seeded by the input's values and :attr:`seed`, so the map does not
    depend on the batching (as SmoothGrad's noise).  The map is the signed EG (its magnitude is what the
    penalty compares with the prior).  ``baselines`` are ignored: EG's references are the train split.
    On a network without a prior (not trained by ``dapr``) only the map is given.
    """

    only_models = frozenset({"dapr"})
    modalities = frozenset({"tabular"})
    architectures = frozenset({"mlp"})
    parameters = {**AttributionMethod.parameters,
                  "n_samples": Int("expected-gradients references (and points α) drawn per explained input",
                                   low=1)}

    def _fit(self, model: nn.Module, train: Any) -> None:
        self.background_ = train.x.detach().flatten(1)

    def draws(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """References ``(k, F)`` and ``α`` ``(k,)`` of one input, from its own seeded generator."""
        gen = torch.Generator().manual_seed(input_seed(x, self.seed, _SALT_EXPLAIN))
        k = self.params["n_samples"]
        rows = torch.randint(len(self.background_), (k,), generator=gen)
        return self.background_[rows], torch.rand(k, generator=gen)

    def attribute(self, model, inputs, target, baselines=None):
        out = []
        for part, t in zip(inputs.split(self.params["batch_size"]), target.split(self.params["batch_size"])):
            refs, alphas = zip(*(self.draws(x) for x in part))
            refs = torch.stack(refs).to(device=part.device, dtype=part.dtype)
            alphas = torch.stack(alphas).to(device=part.device, dtype=part.dtype)
            out.append(expected_gradients(model, part, t, refs, alphas).detach())
        return torch.cat(out)

    def _run(self, ctx):
        record, n = super()._run(ctx)
        record.meta["attribution"] = "expected gradients of the predicted class's logit (train-split references)"
        prior = (getattr(ctx.model, "extras", None) or {}).get(PRIOR)
        if prior is not None and getattr(ctx.info, "meta_features", None) is not None:
            record.meta["prior_importance"] = [float(v) for v in prior_importance(prior, ctx.info.meta_features).cpu()]
        return record, n
