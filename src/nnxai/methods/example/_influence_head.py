"""The convex last-layer problem of influence functions [73] (Koh & Liang, ICML 2017): exact Hessian, exact
inverse-Hessian-vector products, and the per-example gradients of Eq. (2), all in float64.

With the network's penultimate features ``f_i`` (the input of ``model.classifier``, with a constant 1 appended
when the head has a bias) fixed, the head ``Θ`` (shape ``(D, C)``) minimises the L2-damped empirical risk

    R(Θ) = (1/n) Σ_i L(z_i, Θ) + (λ/2) ||Θ||²,    L(z_i, Θ) = −log softmax(Θᵀ f_i)_{y_i},

a strictly convex problem for ``λ > 0`` (the paper's Inception experiment, Sec. 5.1, retrains only the top layer
of a frozen network in the same way; the damping term is the paper's Sec. 4.2 remedy for non-convex nets and
here makes ``H`` positive definite).  With ``p_i = softmax(Θᵀ f_i)`` and ``Θ`` flattened row-major (entry
``a·C + c``):

    ∇_Θ L(z_i) = f_i (p_i − e_{y_i})ᵀ,
    H = ∇²R = (1/n) Σ_i (f_i f_iᵀ) ⊗ (diag p_i − p_i p_iᵀ) + λ I,

built explicitly (``(D·C)²`` entries: 130² on shapes, 650² on digits) and factored once (Cholesky), so that
``H⁻¹ v`` is exact.  The functions below are shared by the method (``solver: head``) and by the
``loo_correlation`` metric, which retrains the same ``R`` without one point.
"""

from __future__ import annotations

import torch
from torch import nn

FORWARD_CHUNK = 256   # inputs per forward pass (memory only)


def head_features(model: nn.Module, x: torch.Tensor, device) -> torch.Tensor:
    """``f_i`` of every row of ``x`` (the input of the linear head ``model.classifier``), float64 on the CPU,
    with a constant-1 column appended when the head has a bias.

    Read by a forward hook on ``model.classifier``; the logits must be that head's output (checked), else the
    head problem says nothing of the network's predictions.
    """
    head = getattr(model, "classifier", None)
    if not isinstance(head, nn.Linear):
        raise ValueError(f"the head solver of influence functions needs a linear head model.classifier; "
                         f"{type(model).__name__} has {type(head).__name__}")
    seen: dict[str, torch.Tensor] = {}

    def hook(_module, inputs, output):
        seen["f"], seen["out"] = inputs[0].detach(), output.detach()

    handle = head.register_forward_hook(hook)
    feats = []
    try:
        with torch.no_grad():
            for xb in x.split(FORWARD_CHUNK):
                out = model(xb.to(device))
                if "f" not in seen or seen["out"].shape != out.shape or not torch.equal(seen["out"], out):
                    raise ValueError(f"{type(model).__name__}'s logits are not the output of its linear head "
                                     "model.classifier; the head solver needs logits = Θᵀ f")
                feats.append(seen.pop("f").flatten(1).double().cpu())
    finally:
        handle.remove()
    f = torch.cat(feats) if feats else torch.zeros(0, head.in_features, dtype=torch.float64)
    if head.bias is not None:
        f = torch.cat([f, torch.ones(len(f), 1, dtype=f.dtype)], dim=1)
    return f


def head_parameters(model: nn.Module) -> torch.Tensor:
    """The network's own head as ``Θ`` (``(D, C)``, float64): ``Wᵀ`` with the bias as the last row."""
    head = model.classifier
    theta = head.weight.detach().T.double().cpu()
    if head.bias is not None:
        theta = torch.cat([theta, head.bias.detach().double().cpu()[None]])
    return theta


def losses(theta: torch.Tensor, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``L(z_i, Θ)`` for every row: the softmax cross-entropy of ``f Θ`` at labels ``y``."""
    return torch.nn.functional.cross_entropy(f @ theta, y, reduction="none")


def objective(theta: torch.Tensor, f: torch.Tensor, y: torch.Tensor, lam: float,
              weights: torch.Tensor | None = None) -> torch.Tensor:
    """``R(Θ) = (1/n) Σ_i w_i L(z_i, Θ) + (λ/2)||Θ||²``; ``w`` (default all ones) drops a point with 0 while
    keeping the ``1/n`` of the full set (upweighting by ε = −1/n, paper Sec. 2.1)."""
    loss = losses(theta, f, y)
    if weights is not None:
        loss = loss * weights
    return loss.sum() / len(f) + 0.5 * lam * (theta * theta).sum()


def residuals(theta: torch.Tensor, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``p_i − e_{y_i}`` (``(n, C)``): ``∇_Θ L(z_i) = f_i ⊗`` this."""
    r = torch.softmax(f @ theta, dim=1)
    r[torch.arange(len(y)), y] -= 1.0
    return r


def gradient(theta: torch.Tensor, f: torch.Tensor, y: torch.Tensor, lam: float,
             weights: torch.Tensor | None = None) -> torch.Tensor:
    """``∇R(Θ) = (1/n) Fᵀ diag(w) (P − Y) + λ Θ`` (shape of ``Θ``)."""
    r = residuals(theta, f, y)
    if weights is not None:
        r = r * weights[:, None]
    return f.T @ r / len(f) + lam * theta


def hessian(theta: torch.Tensor, f: torch.Tensor, lam: float) -> torch.Tensor:
    """The exact ``∇²R`` at ``Θ``, ``(D·C, D·C)`` (labels do not enter the softmax cross-entropy's Hessian).

    ``(1/n) Σ_i (f_i f_iᵀ) ⊗ diag(p_i)`` is built per class (``Fᵀ diag(p_c) F``) and ``(1/n) Σ_i (f_i f_iᵀ) ⊗
    p_i p_iᵀ = GᵀG / n`` with ``G_i = f_i ⊗ p_i``, one matrix product.
    """
    n, d = f.shape
    p = torch.softmax(f @ theta, dim=1)
    c = p.shape[1]
    h = torch.zeros(d, c, d, c, dtype=f.dtype)
    for k in range(c):
        h[:, k, :, k] = (f * p[:, k:k + 1]).T @ f
    g = (f[:, :, None] * p[:, None, :]).reshape(n, d * c)
    h = h.reshape(d * c, d * c) - g.T @ g
    h /= n
    h.diagonal().add_(lam)
    return h


def fit_head(f: torch.Tensor, y: torch.Tensor, lam: float, steps: int, tol: float,
             init: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Minimise ``R`` by Newton's method with a backtracking (Armijo) line search from ``init``.

    Stops once ``max |∇R| <= tol`` or after ``steps`` Newton steps.  Returns ``(Θ̂, H(Θ̂), max |∇R(Θ̂)|)``;
    ``R`` is strongly convex, so the damped Newton iteration converges from any start, quadratically near Θ̂.
    """
    theta = init.detach().clone().double()
    value = objective(theta, f, y, lam)
    grad = gradient(theta, f, y, lam)
    for _ in range(steps):
        if grad.abs().max() <= tol:
            break
        h = hessian(theta, f, lam)
        step = torch.linalg.solve(h, grad.reshape(-1)).reshape(theta.shape)
        slope = float((grad * step).sum())
        t = 1.0
        while True:
            candidate = theta - t * step
            new_value = objective(candidate, f, y, lam)
            if new_value <= value - 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        theta, value = candidate, new_value
        grad = gradient(theta, f, y, lam)
    return theta, hessian(theta, f, lam), float(grad.abs().max())


def per_example_gradients(theta: torch.Tensor, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``∇_Θ L(z_i, Θ)`` flattened row-major, ``(n, D·C)``."""
    r = residuals(theta, f, y)
    return (f[:, :, None] * r[:, None, :]).reshape(len(f), -1)


def influence_on_train(s_test: torch.Tensor, theta: torch.Tensor, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``I_up,loss(z_i, z_t) = −s_tᵀ ∇_Θ L(z_i)`` for every test vector ``s_t = H⁻¹ ∇L(z_t)`` (rows of
    ``s_test``, ``(m, D·C)``) and every training point: ``(m, n)``, computed as ``−f_iᵀ S_t r_i`` without the
    ``(n, D·C)`` gradient matrix."""
    r = residuals(theta, f, y)                                 # (n, C)
    s = s_test.reshape(len(s_test), *theta.shape)              # (m, D, C)
    return -torch.einsum("id,mdc,ic->mi", f, s, r)
