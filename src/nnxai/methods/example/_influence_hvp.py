"""Influence functions [73] over all parameters of a network: Hessian-vector products, conjugate gradients and
LiSSA, and the per-example gradient products of Eq. (2).

The training objective whose Hessian is inverted is the paper's damped one,

    R(θ) = (1/n) Σ_i L(z_i, θ) + (λ/2) ||θ||²,    ∇²R = H + λ I,

with ``H`` the Hessian of the mean cross-entropy at the trained weights θ̂ (paper Sec. 4.2: a damping term
λI added to the Hessian, which is the Hessian of an added L2 term).  A trained network is not a minimiser and
``H`` may have negative eigenvalues; the damping makes ``H + λI`` positive definite when ``λ`` exceeds them.

* ``H v`` by double backward (Pearlmutter's trick, paper Sec. 3: exact products in O(np) time): the
  gradient of ``∇R · v``, accumulated over chunks of the train split (:func:`hvp`), or over one minibatch
  (LiSSA's stochastic ``H̃``).  It never forms ``H``.
* Conjugate gradients (:func:`conjugate_gradient`, the paper's Sec. 3 first option, which its code ran through
  ``fmin_ncg``) solve ``(H + λI) s = v`` with full-batch products; where a direction of non-positive curvature
  appears (``H + λI`` not positive definite) it stops there, as Newton-CG does, and says so.
* LiSSA (:func:`lissa`; Agarwal, Bullins & Hazan 2017, the paper's Sec. 3 stochastic estimator): the Neumann
  recursion ``h_0 = v``, ``h_j = v + h_{j−1} − (H̃_j + λI) h_{j−1} / scale`` with ``H̃_j`` the Hessian of a
  uniformly drawn minibatch, ``h_t / scale → (H + λI)⁻¹ v`` as ``t`` grows when the eigenvalues of ``H + λI``
  lie in ``(0, 2·scale)``; ``repeats`` independent recursions are averaged.  (The authors' code writes the
  recursion as ``v + (1 − d) h − H̃ h / scale``: the same recursion with ``λ = d · scale``.)

All of it runs on a float64 copy of the network (:func:`float64_copy`): the leave-one-out changes that the
metric compares against are ~1/n of a loss, close to float32's resolution after a few hundred steps.  And every
loss, gradient and product here uses :func:`cross_entropy`, which keeps a confidently classified point's loss
and gradient to float64's *relative* precision: ``F.cross_entropy`` computes ``logsumexp(z) − z_y``, which is
exactly 0 once the margin exceeds ~37 (float64), with the label's gradient entry ``p_y − 1`` rounded to 0 as
well (so the gradient points the wrong way).  A ReLU MLP trained to a training loss of ~1e-4 has margins of
40-90 on most inputs (the default run's planted/baseline: over half of its train and test losses were
exactly 0), and the leave-one-out change of such a test loss was then exactly 0 after any retraining.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

CHUNK = 256   # training inputs per forward pass of a full-batch product (memory only)


def float64_copy(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` in eval mode with gradients on every parameter; ``model`` is untouched."""
    net = copy.deepcopy(model).double().eval()
    for p in net.parameters():
        p.requires_grad_(True)
        p.grad = None
    return net


def parameters_of(net: nn.Module) -> list[torch.Tensor]:
    return list(net.parameters())


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat(vector: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    out, start = [], 0
    for p in like:
        out.append(vector[start:start + p.numel()].view_as(p))
        start += p.numel()
    return out


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``L = −log softmax(z)_y`` of every row, accurate to float64's relative precision however small: written as
    ``softplus(logsumexp_{c≠y}(z_c − z_y)) = log(1 + Σ_{c≠y} e^{z_c − z_y})``, whose autograd gradient is
    ``softmax(z) − e_y`` with the label's entry ``−Σ_{c≠y} p_c`` instead of the rounded ``p_y − 1`` (the module
    docstring says why).  The same function as ``F.cross_entropy(logits, y, reduction="none")`` (the paper's
    loss), differing only in rounding; it has batching rules for ``vmap`` and double backward."""
    label = torch.arange(logits.shape[1], device=logits.device) == y[:, None]
    others = (logits - logits.gather(1, y[:, None])).masked_fill(label, -math.inf)
    return torch.logaddexp(torch.zeros_like(others[:, 0]), torch.logsumexp(others, dim=1))


def mean_loss_gradient(net: nn.Module, x: torch.Tensor, y: torch.Tensor, lam: float,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """``∇R(θ)`` flat: ``(1/n) Σ_i w_i ∇L(z_i) + λ θ`` over the whole split (chunked); ``w`` (default ones)
    drops a point with 0 and keeps the ``1/n`` of the full set (upweighting by ε = −1/n, paper Sec. 2.1)."""
    params, dev, n = parameters_of(net), _device(net), len(x)
    total = torch.zeros(sum(p.numel() for p in params), dtype=torch.float64, device=dev)
    for start in range(0, n, CHUNK):
        xb, yb = x[start:start + CHUNK].to(dev, torch.float64), y[start:start + CHUNK].to(dev)
        loss = cross_entropy(net(xb), yb)
        if weights is not None:
            loss = loss * weights[start:start + CHUNK].to(dev, torch.float64)
        total += flat(torch.autograd.grad(loss.sum() / n, params))
    return total + lam * flat(params).detach()


def hvp(net: nn.Module, x: torch.Tensor, y: torch.Tensor, vectors: torch.Tensor, lam: float) -> torch.Tensor:
    """``(H + λI) v`` for every row ``v`` of ``vectors`` (``(m, P)``), ``H`` the Hessian of the mean
    cross-entropy over ``(x, y)``; double backward per chunk, the chunk's first-order graph shared by the rows."""
    params, dev, n = parameters_of(net), _device(net), len(x)
    out = lam * vectors.clone()
    for start in range(0, n, CHUNK):
        xb, yb = x[start:start + CHUNK].to(dev, torch.float64), y[start:start + CHUNK].to(dev)
        loss = cross_entropy(net(xb), yb).sum() / n
        grads = torch.autograd.grad(loss, params, create_graph=True)
        for row, v in enumerate(vectors):
            dot = sum((g * u).sum() for g, u in zip(grads, unflat(v, params)))
            out[row] += flat(torch.autograd.grad(dot, params, retain_graph=row + 1 < len(vectors))).detach()
    return out


def loss_gradients(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∇_θ L(z_t) for each row (m, P), L(z_t) (m,))``: the unregularised test loss (paper Eq. 2)."""
    params, dev = parameters_of(net), _device(net)
    grads, values = [], []
    for xt, yt in zip(x, y):
        loss = cross_entropy(net(xt[None].to(dev, torch.float64)), yt[None].to(dev))[0]
        grads.append(flat(torch.autograd.grad(loss, params)).detach())
        values.append(loss.detach())
    return torch.stack(grads), torch.stack(values)


def point_losses(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``L(z, θ)`` of every row (float64, on the network's device), without a graph."""
    dev = _device(net)
    with torch.no_grad():
        return torch.cat([cross_entropy(net(xb.to(dev, torch.float64)), yb.to(dev))
                          for xb, yb in zip(x.split(CHUNK), y.split(CHUNK))])


def conjugate_gradient(net, x, y, b: torch.Tensor, lam: float, steps: int, tol: float) -> tuple[torch.Tensor, dict]:
    """Solve ``(H + λI) s = b`` by conjugate gradients from ``s = 0`` (full-batch products).

    Stops when ``||r|| <= tol · ||b||``, after ``steps`` iterations, or at the first direction of non-positive
    curvature (the iterate so far is returned, as Newton-CG does).  Returns ``(s, info)`` with ``iterations``,
    ``relative_residual`` and ``negative_curvature``.
    """
    s = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = float(r @ r)
    norm_b = float(b.norm())
    info = {"iterations": 0, "negative_curvature": False}
    for it in range(steps):
        if norm_b == 0.0 or rr ** 0.5 <= tol * norm_b:
            break
        ap = hvp(net, x, y, p[None], lam)[0]
        curvature = float(p @ ap)
        if curvature <= 0.0:
            info["negative_curvature"] = True
            break
        alpha = rr / curvature
        s += alpha * p
        r -= alpha * ap
        rr_new = float(r @ r)
        p = r + (rr_new / rr) * p
        rr = rr_new
        info["iterations"] = it + 1
    info["relative_residual"] = rr ** 0.5 / norm_b if norm_b > 0 else 0.0
    return s, info


def lissa_seed(seed: int, test_index: int, repeat: int) -> int:
    """The seed of one recursion: fixed by the run's seed, the explained test input and the repeat, so that a
    test input's estimate does not depend on which other inputs are explained with it."""
    return int(np.random.SeedSequence([int(seed), int(test_index), int(repeat)]).generate_state(1)[0])


def lissa(net, x, y, v: torch.Tensor, lam: float, depth: int, scale: float, repeats: int, batch_size: int,
          seeds: list[int]) -> torch.Tensor:
    """LiSSA's estimate of ``(H + λI)⁻¹ v``: the mean over ``repeats`` recursions of ``h_depth / scale`` (see
    the module docstring); recursion ``r`` draws its minibatches (``batch_size`` points uniformly, with
    replacement) from ``seeds[r]``; ``batch_size >= n`` uses the whole split at every step (no sampling)."""
    n, estimates = len(x), []
    for r in range(repeats):
        gen = torch.Generator().manual_seed(seeds[r])
        h = v.clone()
        for _ in range(depth):
            if batch_size >= n:          # the whole split: H itself, the deterministic Neumann series
                xb, yb = x, y
            else:
                rows = torch.randint(0, n, (batch_size,), generator=gen)
                xb, yb = x[rows], y[rows]
            h = v + h - hvp(net, xb, yb, h[None], lam)[0] / scale
            if not torch.isfinite(h).all():
                raise FloatingPointError(f"LiSSA diverged (scale {scale} is too small for the Hessian's largest "
                                         f"eigenvalue, or damping {lam} too small for its most negative one)")
        estimates.append(h / scale)
    return torch.stack(estimates).mean(0)


def _functional_per_example(net: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    from torch.func import functional_call, grad, vmap

    params = {k: p.detach() for k, p in net.named_parameters()}
    buffers = {k: b.detach() for k, b in net.named_buffers()}

    def loss(p, xi, yi):
        out = functional_call(net, (p, buffers), (xi[None],))
        return cross_entropy(out, yi[None])[0]

    grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, xb, yb)
    names = [k for k, _ in net.named_parameters()]
    return torch.cat([grads[k].reshape(len(xb), -1) for k in names], dim=1)


def _looped_per_example(net: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    params = parameters_of(net)
    rows = []
    for xi, yi in zip(xb, yb):
        loss = cross_entropy(net(xi[None]), yi[None])[0]
        rows.append(flat(torch.autograd.grad(loss, params)).detach())
    return torch.stack(rows)


def per_example_products(net: nn.Module, x: torch.Tensor, y: torch.Tensor, s_test: torch.Tensor,
                         batch_size: int) -> torch.Tensor:
    """``∇_θ L(z_i)ᵀ s_t`` for every training point ``i`` and every row ``s_t`` of ``s_test``: ``(m, n)``.

    Per-example gradients of ``batch_size`` points at a time, by ``torch.func`` (``vmap`` of ``grad``); a
    network whose forward pass ``vmap`` cannot batch (an operation without a batching rule) falls back to one
    backward pass per point, the same numbers more slowly.
    """
    dev = _device(net)
    out = torch.zeros(len(s_test), len(x), dtype=torch.float64)
    s = s_test.to(dev, torch.float64)
    use_vmap = True
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size].to(dev, torch.float64), y[start:start + batch_size].to(dev)
        if use_vmap:
            try:
                g = _functional_per_example(net, xb, yb)
            except (RuntimeError, NotImplementedError):
                use_vmap = False
        if not use_vmap:
            g = _looped_per_example(net, xb, yb)
        out[:, start:start + len(xb)] = (s @ g.T).cpu()
    return out
