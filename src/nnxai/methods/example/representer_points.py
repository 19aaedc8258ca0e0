"""Representer point selection (survey ref. [117]; Yeh, Kim, Yen, Ravikumar, NeurIPS 2018).

Representer theorem (paper, Theorem 3.1): if the last layer ``Θ`` is a stationary point of

    (1/n) Σ_i L(x_i, y_i, Θ) + λ ||Θ||²,

then the pre-softmax output for any input ``x_t`` decomposes over the training points,

    Φ(x_t, Θ) = Θᵀ f_t = Σ_i α_i f_iᵀ f_t,    α_i = -(1 / (2 λ n)) ∂L(x_i, y_i, Θ) / ∂Φ(x_i, Θ),

where ``f_i`` is the penultimate representation (``model.embed``, read as the input of
``model.classifier``).  ``α_ic f_iᵀ f_t`` is the *representer value* of training point ``i`` for class
``c``: positive values are excitatory, negative inhibitory.

As in the paper ("training an interpretable model by imposing L2 regularisation") a trained
network is not at such a stationary point, so the last layer is re-fitted, starting from the network's own
weights: ``L`` is the softmax cross-entropy against the **original model's predicted probabilities** on the
training set (soft labels, as in the authors' reference code), minimised in float64 by full-batch L-BFGS
with a strong-Wolfe line search (convex; strongly convex for λ > 0).  Then ``∂L/∂Φ_i = softmax(Θᵀ f_i) -
p_i``, so ``α_i = (p_i - softmax(Θᵀ f_i)) / (2 λ n)``.  L-BFGS stops once the float64 objective no
longer changes (largest gradient entry ~1e-9); since ``Σ_i α_i f_i = Θ - ∇/(2λ)``, the decomposition then
misses ``Θᵀ f_t`` by ``|∇ᵀ f_t| / (2λ)``, which ``extra["fit_grad_max"]`` and ``representer_fidelity``
report.

The bias is folded into ``Θ`` by appending a constant-1 feature to every ``f`` and is regularised like the
weights (also as the reference code does); the identity above then holds for the full logits, bias included.

Every training example of ``ctx.train`` is used, without subsampling: the fit works on ``(n, d + 1)``
features only, and representer values are computed in chunks of test inputs, so memory stays
``O(chunk · n)``.
"""

from __future__ import annotations

import torch
from torch import nn

from nnxai.explanations import Examples
from nnxai.methods.base import ExampleSelector, explained_indices
from nnxai.params import N_EXPLAIN, Float, Int
from nnxai.registry import register

FORWARD_CHUNK = 256   # inputs per forward pass (memory only)
SCORE_CHUNK = 64      # explained inputs whose (chunk, n_train) representer values are held at once


def penultimate(model: nn.Module, x: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f with a constant-1 column appended, logits)``, float64 on the CPU, from one forward pass.

    ``f`` is the input of the linear head ``model.classifier`` (``model.embed(x)`` for the networks here),
    read by a forward hook; the logits must be the head's output, else the theorem says nothing of them.
    """
    seen: dict[str, torch.Tensor] = {}

    def hook(_module, inputs, output):
        seen["f"], seen["head"] = inputs[0].detach(), output.detach()

    handle = model.classifier.register_forward_hook(hook)
    feats, logits = [], []
    try:
        with torch.no_grad():
            for xb in x.split(FORWARD_CHUNK):
                out = model(xb.to(device))
                if "f" not in seen or seen["head"].shape != out.shape or not torch.equal(seen["head"], out):
                    raise ValueError(f"{type(model).__name__}'s logits are not the output of its linear head "
                                     "model.classifier; the representer theorem needs logits = Θᵀ f")
                feats.append(seen.pop("f").flatten(1).double().cpu())
                logits.append(out.double().cpu())
    finally:
        handle.remove()
    f = torch.cat(feats)
    return torch.cat([f, torch.ones(len(f), 1, dtype=f.dtype)], dim=1), torch.cat(logits)


def objective(theta: torch.Tensor, features: torch.Tensor, targets: torch.Tensor, lambda_l2: float) -> torch.Tensor:
    """``(1/n) Σ_i CE(p_i, softmax(Θᵀ f_i)) + λ ||Θ||²`` with soft targets ``p_i``."""
    logp = torch.log_softmax(features @ theta, dim=1)
    return -(targets * logp).sum(1).mean() + lambda_l2 * (theta * theta).sum()


def fit_last_layer(features: torch.Tensor, targets: torch.Tensor, lambda_l2: float, steps: int,
                   init: torch.Tensor | None = None) -> torch.Tensor:
    """Full-batch L-BFGS on :func:`objective`; returns ``Θ`` of shape ``(d + 1, classes)``, float64."""
    features, targets = features.double(), targets.double()
    start = torch.zeros(features.shape[1], targets.shape[1], dtype=torch.float64) if init is None else init
    theta = start.detach().clone().double().requires_grad_(True)
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=steps, max_eval=2 * steps, history_size=50,
                            tolerance_grad=1e-12, tolerance_change=1e-18, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = objective(theta, features, targets, lambda_l2)
        loss.backward()
        return loss

    opt.step(closure)
    return theta.detach()


def objective_gradient(theta, features, targets, lambda_l2) -> torch.Tensor:
    """Closed-form gradient ``(1/n) Fᵀ (softmax(FΘ) - P) + 2 λ Θ`` (zero at the stationary point)."""
    q = torch.softmax(features @ theta, dim=1)
    return features.T @ (q - targets) / len(features) + 2 * lambda_l2 * theta


def representer_alphas(features: torch.Tensor, targets: torch.Tensor, theta: torch.Tensor,
                       lambda_l2: float) -> torch.Tensor:
    """``α_i = -(1/(2λn)) ∂L_i/∂Φ_i = (p_i - softmax(Θᵀ f_i)) / (2 λ n)``, shape ``(n, classes)``."""
    q = torch.softmax(features @ theta, dim=1)
    return (targets - q) / (2.0 * lambda_l2 * len(features))


@register("representer_points")
class RepresenterPoints(ExampleSelector):
    """Excitatory and inhibitory training examples of each prediction, by the representer theorem [117].

    :meth:`fit` re-fits the last layer on the train split: the features ``features_`` (``f_i`` with the
    constant 1), the soft targets ``targets_`` (the network's probabilities), the stationary ``theta_`` and the
    representer weights ``alpha_``.  :meth:`select` then returns :class:`~nnxai.explanations.Examples`;
    ``extra`` also holds, for the explained inputs, ``decomposed_logits`` (Σ_i α_i f_iᵀ f_t), ``head_logits``
    (Θᵀ f_t of the re-fitted layer) and ``model_logits`` (the original network), plus ``fit_grad_max``
    (largest |gradient| at the fitted Θ).
    """

    parameters = {
        "n_explain": N_EXPLAIN,
        "top_k": Int("training examples kept per input, with the largest (examples) and the most negative "
                     "(extra.inhibitory_examples) representer values α_ic f_iᵀ f_t", low=1, at_most="train"),
        "lambda_l2": Float("λ of the L2-regularised last layer re-fitted to a stationary point (Theorem 3.1)",
                           low=0.0, low_open=True),
        "fit_steps": Int("L-BFGS iterations of the re-fit", low=1),
    }
    needs_linear_head = True

    def _fit(self, model: nn.Module, train) -> None:
        if not isinstance(getattr(model, "classifier", None), nn.Linear):
            raise ValueError(f"representer points need a linear head model.classifier; "
                             f"{type(model).__name__} has none")
        lam = float(self.params["lambda_l2"])
        self.features_, logits = penultimate(model, train.x, _device(model))
        self.targets_ = torch.softmax(logits, dim=1)
        head = model.classifier
        bias = head.bias.detach() if head.bias is not None else torch.zeros(head.out_features)
        init = torch.cat([head.weight.detach().T.cpu(), bias.cpu()[None]]).double()   # start from the network
        self.theta_ = fit_last_layer(self.features_, self.targets_, lam, int(self.params["fit_steps"]), init)
        self.alpha_ = representer_alphas(self.features_, self.targets_, self.theta_, lam)

    def select(self, model: nn.Module, ctx) -> Examples:
        self.check_fitted(model)
        p = self.params
        lam = float(p["lambda_l2"])
        f_train, theta, alpha = self.features_, self.theta_, self.alpha_
        idx = explained_indices(len(ctx.test.x), p["n_explain"], ctx.seed)
        f_test, model_logits = penultimate(model, ctx.test.x[idx], ctx.device)
        pred = model_logits.argmax(1)
        k = min(int(p["top_k"]), len(f_train))
        top, low, decomposed = [], [], []
        for rows in torch.arange(len(idx)).split(SCORE_CHUNK):
            kernel = f_test[rows] @ f_train.T                      # f_iᵀ f_t, (chunk, n_train)
            decomposed.append(kernel @ alpha)
            values = kernel * alpha[:, pred[rows]].T               # α_ic f_iᵀ f_t for the predicted c
            top.append(values.topk(k, dim=1))
            low.append(values.topk(k, dim=1, largest=False))
        examples = torch.cat([t.indices for t in top]).tolist()
        scores = torch.cat([t.values for t in top]).tolist()
        extra = {
            "inhibitory_examples": torch.cat([t.indices for t in low]).tolist(),
            "inhibitory_scores": torch.cat([t.values for t in low]).tolist(),
            "decomposed_logits": torch.cat(decomposed).tolist(),
            "head_logits": (f_test @ theta).tolist(),
            "model_logits": model_logits.tolist(),
            "fit_grad_max": float(objective_gradient(theta, f_train, self.targets_, lam).abs().max()),
            "n_train": len(f_train),
        }
        return Examples(indices=idx.tolist(), targets=pred.tolist(), examples=examples, scores=scores, extra=extra)


def _device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters live (the fit's forward passes run there)."""
    return next(model.parameters()).device
