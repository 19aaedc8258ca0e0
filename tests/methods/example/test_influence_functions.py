"""Influence functions [73]: the head's gradient and Hessian against autograd, Hessian-vector products against
the explicit Hessian, CG and LiSSA against the exact inverse, the three solvers against each other on
logistic regression, the leave-one-out prediction against independent retraining (numpy Newton, scikit-learn), the
self-influence axiom, and the record against a brute-force ranking.

Settings fixed before any result: λ = 0.01 (the paper's MNIST logistic regression); on the non-convex MLP
λ = 0.01 + |most negative Hessian eigenvalue| for CG (the paper damps for exactly that reason) and 0.1 + that
for LiSSA (its depth grows with the condition number: 0.01 made the recursion ~4000 steps); LiSSA's scale is
the largest eigenvalue of H + λI (the recursion converges for eigenvalues in (0, 2·scale)) and its depth the
smallest t with (1 − λ_min/scale)^t below the tolerance asserted.

The leave-one-out check (paper Fig. 2, left) runs at n = 200 training points: the influence function is the
first-order term in the removed weight 1/n, and at the first size tried, n = 60, Pearson's r over 8 test
inputs × 60 removals was 0.987 (0.984-0.995 per input), below the 0.99 asked; at n = 200 it is 0.999.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from nnxai.data import DatasetInfo, PreparedSplit
from nnxai.explanations import Examples
from nnxai.methods.base import ExplainContext, explained_indices
from nnxai.methods.example import _influence_head as head
from nnxai.methods.example import _influence_hvp as full
from nnxai.methods.example.influence_functions import InfluenceFunctions
from nnxai.models.networks import MLP, ConvNet
from nnxai.params import ParamError

LAM = 0.01
INFO = DatasetInfo("toy", "tabular", 3, (4,), False, False, "test")


pytestmark = pytest.mark.usefixtures("one_thread")


def params(**over):
    base = {"n_explain": 6, "top_k": 5, "solver": "head", "damping": LAM, "fit_steps": 50, "fit_tol": 1e-12,
            "lissa": {"depth": 100, "scale": 10.0, "repeats": 1, "batch_size": 1000},
            "cg": {"steps": 200, "tol": 1e-12}, "batch_size": 32}
    return {**base, **over}


def logistic_problem(n=60, n_test=8, seed=0):
    """A 3-class problem with 4 features and a logistic regression (an MLP without hidden layer)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(4, 3, generator=g)
    x = torch.randn(n + n_test, 4, generator=g)
    y = torch.multinomial(torch.softmax(2 * x @ w, 1), 1, generator=g)[:, 0]
    torch.manual_seed(seed)
    model = MLP(4, 3, hidden=()).eval()
    train = PreparedSplit(x=x[:n], y=y[:n])
    test = PreparedSplit(x=x[n:], y=y[n:])
    return model, ExplainContext(model=model, dataset="toy", model_id="logreg", info=INFO, train=train, test=test,
                                 seed=5)


def load_head(model, theta):
    """Put a float64 head Θ ((D + 1, C), bias last) into the network's classifier."""
    with torch.no_grad():
        model.classifier.weight.copy_(theta[:-1].T.float())
        model.classifier.bias.copy_(theta[-1].float())
    return model


def with_ones(x):
    x = x.double()
    return torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)


# -- the head problem -----------------------------------------------------------------------------------------

def test_head_gradient_hessian_and_per_example_gradients_match_autograd():
    g = torch.Generator().manual_seed(0)
    f = with_ones(torch.randn(30, 4, generator=g))
    y = torch.randint(0, 3, (30,), generator=g)
    theta = torch.randn(5, 3, generator=g, dtype=torch.float64)
    lam = 0.05

    def objective(v):
        return head.objective(v.reshape(5, 3), f, y, lam)

    v = theta.reshape(-1)
    torch.testing.assert_close(head.hessian(theta, f, lam), torch.autograd.functional.hessian(objective, v),
                               rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(head.gradient(theta, f, y, lam).reshape(-1),
                               torch.autograd.functional.jacobian(objective, v), rtol=1e-10, atol=1e-13)
    per = head.per_example_gradients(theta, f, y)
    for i in (0, 7, 29):
        auto = torch.autograd.functional.jacobian(
            lambda t: F.cross_entropy((f[i:i + 1] @ t.reshape(5, 3)), y[i:i + 1]), v)
        torch.testing.assert_close(per[i], auto, rtol=1e-10, atol=1e-13)
    # I_up,loss = −s_tᵀ ∇L(z_i) computed without the (n, D·C) matrix
    s = torch.randn(4, 15, generator=g, dtype=torch.float64)
    torch.testing.assert_close(head.influence_on_train(s, theta, f, y), -s @ per.T, rtol=1e-10, atol=1e-13)


def test_head_fit_reaches_the_minimiser_and_the_solve_is_exact():
    model, ctx = logistic_problem()
    method = InfluenceFunctions(**params()).fit(model, ctx.train, seed=ctx.seed)
    f = with_ones(ctx.train.x)
    torch.testing.assert_close(method.features_, f)
    assert method.fit_grad_max_ < 1e-12
    torch.testing.assert_close(head.gradient(method.theta_, f, ctx.train.y, LAM), torch.zeros(5, 3,
                               dtype=torch.float64), rtol=0, atol=1e-12)
    # the network's own head is far from it (trained by nobody, seeded init)
    assert head.gradient(head.head_parameters(model), f, ctx.train.y, LAM).abs().max() > 1e-2
    record = method.select(model, ctx)
    assert max(record.extra["solve_residual"]) < 1e-12
    low, high = record.extra["hessian_eigenvalues"]
    assert low >= LAM - 1e-12 and high > low


# -- Hessian-vector products, CG and LiSSA on a non-convex network --------------------------------------------

def small_mlp(n=100, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).long() + (x[:, 3] > 1).long()
    torch.manual_seed(seed)
    net = MLP(5, 3, hidden=(6,))
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return full.float64_copy(net), x, y


def explicit_hessian(net, x, y, lam):
    """∇²[mean CE + (λ/2)||θ||²] over the flat parameters, by torch.autograd.functional.hessian."""
    names = [k for k, _ in net.named_parameters()]
    params = full.parameters_of(net)

    def loss(v):
        out = torch.func.functional_call(net, dict(zip(names, full.unflat(v, params))), (x.double(),))
        return F.cross_entropy(out, y) + 0.5 * lam * (v * v).sum()

    return torch.autograd.functional.hessian(loss, full.flat(params).detach())


def test_hvp_matches_the_explicit_hessian():
    net, x, y = small_mlp(n=300)                       # > one chunk of 256: the accumulation over chunks
    h = explicit_hessian(net, x, y, 0.3)
    v = torch.randn(3, h.shape[0], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(full.hvp(net, x, y, v, 0.3), v @ h, rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def damped():
    """The small MLP, its exact damped Hessian (λ = 0.01 + |most negative eigenvalue|), a test gradient and
    the exact solution s = (H + λI)⁻¹ ∇L(z_test)."""
    net, x, y = small_mlp()
    h0 = explicit_hessian(net, x, y, 0.0)
    negative = max(0.0, -float(torch.linalg.eigvalsh(h0)[0]))
    g, _ = full.loss_gradients(net, torch.randn(1, 5, generator=torch.Generator().manual_seed(9)), torch.tensor([2]))
    out = {"net": net, "x": x, "y": y, "g": g[0]}
    for name, lam in (("cg", 0.01 + negative), ("lissa", 0.1 + negative)):
        a = h0 + lam * torch.eye(len(h0), dtype=torch.float64)
        out[name] = {"lam": lam, "exact": torch.linalg.solve(a, g[0]), "eig": torch.linalg.eigvalsh(a)}
    return out


def test_conjugate_gradients_match_the_exact_inverse(damped):
    case = damped["cg"]
    assert case["eig"][0] > 0                                      # H + λI positive definite
    s, info = full.conjugate_gradient(damped["net"], damped["x"], damped["y"], damped["g"], case["lam"],
                                      steps=500, tol=1e-12)
    assert not info["negative_curvature"] and info["relative_residual"] <= 1e-12
    torch.testing.assert_close(s, case["exact"], rtol=1e-8, atol=1e-10)


def test_conjugate_gradients_stop_at_negative_curvature(damped):
    """Undamped, the trained MLP's Hessian has a negative eigenvalue: CG started along its eigenvector meets
    the negative curvature at once and must say so (as Newton-CG does) instead of returning a false solve."""
    eig, vecs = torch.linalg.eigh(explicit_hessian(damped["net"], damped["x"], damped["y"], 0.0))
    assert eig[0] < 0
    s, info = full.conjugate_gradient(damped["net"], damped["x"], damped["y"], vecs[:, 0], 0.0, steps=50,
                                      tol=1e-12)
    assert info["negative_curvature"] and info["iterations"] == 0 and float(s.abs().max()) == 0.0


def lissa_settings(eig, tolerance):
    scale = float(eig[-1])
    depth = math.ceil(math.log(tolerance) / math.log(1.0 - float(eig[0]) / scale))
    return scale, depth


def test_full_batch_lissa_is_the_neumann_series_of_the_exact_inverse(damped):
    case = damped["lissa"]
    scale, depth = lissa_settings(case["eig"], 1e-8)
    s = full.lissa(damped["net"], damped["x"], damped["y"], damped["g"], case["lam"], depth, scale, 1,
                   batch_size=len(damped["x"]), seeds=[0])
    exact = case["exact"]
    assert float((s - exact).norm() / exact.norm()) < 1e-7


def test_minibatch_lissa_estimates_the_exact_inverse(damped):
    """The stochastic recursion (quarter-size minibatches, 5 repeats, depth for a 1e-3 bias) is unbiased; its
    relative error stays within a tenth of the exact solution."""
    case = damped["lissa"]
    scale, depth = lissa_settings(case["eig"], 1e-3)
    seeds = [full.lissa_seed(0, 0, r) for r in range(5)]
    s = full.lissa(damped["net"], damped["x"], damped["y"], damped["g"], case["lam"], depth, scale, 5,
                   batch_size=len(damped["x"]) // 4, seeds=seeds)
    exact = case["exact"]
    assert float((s - exact).norm() / exact.norm()) < 0.1


def test_auto_solver_on_a_small_mlp_is_the_closed_form_all_parameter_influence(damped):
    """solver auto on an MLP (57 parameters) runs CG over all parameters: every I_up,loss = −∇L(z_i)ᵀ (H + λI)⁻¹
    ∇L(z_t) with H the explicit Hessian (paper Eq. 2), to the CG tolerance."""
    net, x, y, lam = damped["net"], damped["x"], damped["y"], damped["cg"]["lam"]
    model = MLP(5, 3, hidden=(6,))
    model.load_state_dict({k: v.float() for k, v in net.state_dict().items()})
    method = InfluenceFunctions(**params(solver="auto", damping=lam)).fit(model, PreparedSplit(x=x, y=y))
    assert method.solver_ == "cg"
    x_test = torch.randn(3, 5, generator=torch.Generator().manual_seed(4))
    y_test = torch.tensor([0, 1, 2])
    got = method.influence(model, x_test, y_test, torch.arange(3))
    # the closed form on the float32 model's own weights (float64 copy), independently of the method's copy
    ref_net = full.float64_copy(model)
    a = explicit_hessian(ref_net, x, y, lam)
    g_test, _ = full.loss_gradients(ref_net, x_test, y_test)
    per_example = full._looped_per_example(ref_net, x.double(), y)
    exact = -torch.linalg.solve(a, g_test.T).T @ per_example.T
    assert got["iterations"] and not any(got["negative_curvature"])
    torch.testing.assert_close(got["influence"], exact, rtol=1e-7, atol=1e-9 * float(exact.abs().max()))


def test_auto_solver_keeps_the_head_on_a_network_above_the_size_limit():
    from nnxai.methods.example.influence_functions import AUTO_MAX_PARAMETERS, resolve_solver

    torch.manual_seed(0)
    cnn = ConvNet(3, 2, widths=(8, 16, 16))
    mlp = MLP(17, 2, hidden=(32, 16))                  # the MONK's MLP: the largest tabular network here
    assert sum(q.numel() for q in cnn.parameters()) > AUTO_MAX_PARAMETERS
    assert sum(q.numel() for q in mlp.parameters()) <= AUTO_MAX_PARAMETERS
    assert resolve_solver("auto", cnn) == "head" and resolve_solver("auto", mlp) == "cg"
    assert all(resolve_solver(s, m) == s for s in ("head", "cg", "lissa") for m in (cnn, mlp))
    model, ctx = logistic_problem()
    record = InfluenceFunctions(**params(solver="auto", n_explain=2)).explain(ctx)
    assert record.extra["solver"] == "cg" and "cg_iterations" in record.extra


# -- the solvers agree on logistic regression, the one case where the head is every parameter -----------------

@pytest.fixture(scope="module")
def converged_logreg():
    """Logistic regression whose weights are the minimiser Θ̂ of R (head fit), and the head solver's result."""
    model, ctx = logistic_problem()
    method = InfluenceFunctions(**params()).fit(model, ctx.train, seed=ctx.seed)
    load_head(model, method.theta_)
    method = InfluenceFunctions(**params()).fit(model, ctx.train, seed=ctx.seed)
    idx = torch.arange(len(ctx.test.y))
    return model, ctx, method, method.influence(model, ctx.test.x, ctx.test.y, idx)


@pytest.mark.parametrize("solver", ["cg", "lissa"])
def test_all_parameter_solvers_match_the_exact_head_inverse(converged_logreg, solver):
    model, ctx, method, exact = converged_logreg
    eig = torch.linalg.eigvalsh(method.hessian_)
    scale, depth = lissa_settings(eig, 1e-9)
    other = InfluenceFunctions(**params(solver=solver, lissa={"depth": depth, "scale": scale, "repeats": 1,
                                                                 "batch_size": 1000}))
    other.fit(model, ctx.train, seed=ctx.seed)
    got = other.influence(model, ctx.test.x[:3], ctx.test.y[:3], torch.arange(3))
    ref = exact["influence"][:3]
    assert float((got["influence"] - ref).abs().max() / ref.abs().max()) < 1e-5
    torch.testing.assert_close(got["test_loss"], exact["test_loss"][:3], rtol=1e-6, atol=1e-9)
    assert float(got["residual"].max()) < 1e-5


def test_self_influence_is_negative(converged_logreg):
    """Upweighting a training point lowers its own loss to first order: I_up,loss(z, z) = −gᵀH⁻¹g < 0."""
    model, ctx, method, _ = converged_logreg
    infl = method.influence(model, ctx.train.x, ctx.train.y, torch.arange(len(ctx.train.y)))["influence"]
    assert (infl.diagonal() < 0).all()


def minimise_without(x: np.ndarray, y: np.ndarray, n: int, lam: float, removed: int | None,
                     start: np.ndarray | None = None) -> np.ndarray:
    """Θ minimising (1/n) Σ_{i != removed} CE + (λ/2)||Θ||², by Newton's method with step halving in numpy from
    ``start`` (default zero), with the Hessian by ``einsum`` (code independent of the method's), until
    max |∇| < 1e-12; the minimiser is unique."""
    keep = np.ones(len(y), dtype=bool)
    if removed is not None:
        keep[removed] = False
    xs, onehot = x[keep], np.eye(3)[y[keep]]
    d = x.shape[1]

    def value(theta):
        return float(cross_entropy(theta, xs, y[keep]).sum() / n + 0.5 * lam * (theta * theta).sum())

    theta = np.zeros((d, 3)) if start is None else start.copy()
    for _ in range(100):
        z = xs @ theta
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = xs.T @ (p - onehot) / n + lam * theta
        if np.abs(grad).max() < 1e-12:
            break
        curvature = np.einsum("ic,cd->icd", p, np.eye(3)) - p[:, :, None] * p[:, None, :]
        hess = np.einsum("ia,ib,icd->acbd", xs, xs, curvature).reshape(3 * d, 3 * d) / n + lam * np.eye(3 * d)
        step = np.linalg.solve(hess, grad.ravel()).reshape(d, 3)
        t = 1.0
        while value(theta - t * step) > value(theta) + 1e-14 and t > 1e-8:
            t /= 2
        theta = theta - t * step
    return theta


def cross_entropy(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    z = x @ theta
    z = z - z.max(1, keepdims=True)
    return -(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1)))


def test_leave_one_out_prediction_matches_independent_retraining():
    """Paper Fig. 2 (left) on a convex model: −(1/n) I_up,loss against the test-loss change of an independent
    fit without each training point (Newton's method in numpy), at n = 200 (see the module docstring); the full fit is
    also scikit-learn's (C = 1/(nλ), the bias a penalised feature): the same objective."""
    from sklearn.linear_model import LogisticRegression

    model, ctx = logistic_problem(n=200)
    method = InfluenceFunctions(**params()).fit(model, ctx.train, seed=ctx.seed)
    n = len(ctx.train.y)
    infl = method.influence(model, ctx.test.x, ctx.test.y, torch.arange(len(ctx.test.y)))["influence"].numpy()
    x_train, y_train = with_ones(ctx.train.x).numpy(), ctx.train.y.numpy()
    x_test, y_test = with_ones(ctx.test.x).numpy(), ctx.test.y.numpy()
    clf = LogisticRegression(C=1.0 / (n * LAM), fit_intercept=False, tol=1e-12, max_iter=10000)
    np.testing.assert_allclose(clf.fit(x_train, y_train).coef_.T, method.theta_.numpy(), atol=1e-6)
    everything = minimise_without(x_train, y_train, n, LAM, None)
    np.testing.assert_allclose(everything, method.theta_.numpy(), atol=1e-7)
    base = cross_entropy(everything, x_test, y_test)
    actual = np.stack([cross_entropy(minimise_without(x_train, y_train, n, LAM, j, everything), x_test, y_test)
                       - base for j in range(n)], axis=1)
    predicted = -infl / n
    assert np.corrcoef(predicted.ravel(), actual.ravel())[0, 1] > 0.99
    for row in range(len(y_test)):
        assert np.corrcoef(predicted[row], actual[row])[0, 1] > 0.99


# -- the record -----------------------------------------------------------------------------------------------

def test_record_keeps_the_extremes_of_a_brute_force_ranking():
    model, ctx = logistic_problem()
    method = InfluenceFunctions(**params())
    record = method.explain(ctx)
    assert isinstance(record, Examples) and record.meta["method"] == "influence_functions"
    idx = explained_indices(len(ctx.test.y), 6, ctx.seed)
    assert record.indices == idx.tolist()
    assert record.targets == ctx.test.y[idx].tolist()                 # the loss's label, not the prediction
    with torch.no_grad():
        assert record.extra["predictions"] == model(ctx.test.x[idx]).argmax(1).tolist()
    infl = method.influence(model, ctx.test.x[idx], ctx.test.y[idx], idx)["influence"].numpy()
    for row in range(len(idx)):
        order = sorted(range(infl.shape[1]), key=lambda j: infl[row, j])
        assert record.examples[row] == order[:5]
        assert record.extra["harmful_examples"][row] == order[::-1][:5]
        np.testing.assert_allclose(record.scores[row], infl[row, order[:5]], rtol=1e-12)
        assert all(s < 0 for s in record.scores[row]) and all(s > 0 for s in record.extra["harmful_scores"][row])
    # test_loss is the refitted head's cross-entropy at the label
    f_t = with_ones(ctx.test.x[idx])
    expected = F.cross_entropy(f_t @ method.theta_, ctx.test.y[idx], reduction="none")
    np.testing.assert_allclose(record.extra["test_loss"], expected.numpy(), rtol=1e-12)
    again = InfluenceFunctions(**params()).explain(ctx)
    assert again.examples == record.examples and again.scores == record.scores


def test_per_example_products_by_vmap_equal_one_backward_per_point():
    torch.manual_seed(0)
    net = full.float64_copy(ConvNet(3, 2, widths=(4, 4, 6)))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(10, 3, 8, 8, generator=g), torch.randint(0, 2, (10,), generator=g)
    s = torch.randn(2, sum(p.numel() for p in net.parameters()), generator=g, dtype=torch.float64)
    looped = full._looped_per_example(net, x.double(), y)
    torch.testing.assert_close(full._functional_per_example(net, x.double(), y), looped, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(full.per_example_products(net, x, y, s, batch_size=4), s @ looped.T,
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("solver", ["head", "cg", "lissa"])
def test_runs_on_a_convnet_and_leaves_it_alone(solver):
    torch.manual_seed(0)
    model = ConvNet(3, 2, widths=(4, 4, 6)).train()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 3, 8, 8, generator=g), torch.randint(0, 2, (40,), generator=g)
    info = DatasetInfo("toyimg", "image", 2, (3, 8, 8), False, False, "test")
    split = PreparedSplit(x=x, y=y)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rec = InfluenceFunctions(**params(solver=solver, n_explain=3, top_k=4, damping=1.0,
                                      lissa={"depth": 20, "scale": 10.0, "repeats": 1, "batch_size": 8},
                                      cg={"steps": 20, "tol": 1e-8})).explain(
        ExplainContext(model, "toyimg", "cnn", info, split, split))
    assert len(rec.examples) == 3 and all(len(e) == 4 for e in rec.examples)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())


def test_head_solver_needs_logits_from_the_linear_head():
    model, ctx = logistic_problem()

    class Scaled(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.classifier = inner, inner.classifier

        def forward(self, x):
            return 2 * self.inner(x)

    with pytest.raises(ValueError, match="linear head"):
        InfluenceFunctions(**params()).fit(Scaled(model), ctx.train)


@pytest.mark.parametrize("bad, message", [
    ({"solver": "exact"}, r"solver: 'exact' is not one of 'auto', 'head', 'lissa', 'cg'"),
    ({"damping": 0.0}, r"damping: 0\.0 is out of range, expected > 0"),
    ({"top_k": 0}, r"top_k: 0 is out of range"),
    ({"lissa": {"depth": 10, "scale": 0.0, "repeats": 1, "batch_size": 1}}, r"lissa\.scale: 0\.0 is out of range"),
    ({"cg": {"steps": 10}}, r"cg: parameters .* missing \['tol'\]")])
def test_bad_params_are_named(bad, message):
    with pytest.raises(ParamError, match=r"'influence_functions'\." + message):
        InfluenceFunctions(**params(**bad))


# -- the report figure ----------------------------------------------------------------------------------------

def test_influential_examples_figure_draws_the_records_extremes(tmp_path):
    from nnxai import data
    from nnxai.report.influential_examples import TOP, rows_of, write_influential_examples

    data.prepare("shapes", tmp_path, {"train": 48, "val": 1, "test": 16}, 0)
    train, test = data.load_split("shapes", "train", tmp_path), data.load_split("shapes", "test", tmp_path)
    torch.manual_seed(0)
    model = ConvNet(3, 2, widths=(4, 4, 6)).eval()
    ctx = ExplainContext(model, "shapes", "baseline", data.DATASETS["shapes"], train, test, seed=0)
    record = InfluenceFunctions(**params(n_explain=4, top_k=4)).explain(ctx)
    path = tmp_path / "data/explanations/shapes/baseline/influence_functions.json"
    path.parent.mkdir(parents=True)
    record.save(path)
    rows = rows_of(record, train.y.numpy())
    assert [r["test"][0] for r in rows] == record.indices[:3]
    for row, entry in enumerate(rows):
        assert [(j, s) for j, _, s in entry["helpful"]] == list(zip(record.examples[row], record.scores[row]))[:TOP]
        assert [j for j, _, _ in entry["harmful"]] == record.extra["harmful_examples"][row][:TOP]
        assert [lab for _, lab, _ in entry["helpful"]] == [str(int(train.y[j])) for j in record.examples[row][:TOP]]
    files = write_influential_examples(tmp_path / "figures", tmp_path)
    assert [f.name for f in files] == [f"influential_examples.{ext}" for ext in ("pdf", "png", "html")]
    html = files[2].read_text()
    assert files[1].read_bytes().startswith(b"\x89PNG") and f"<td>{record.examples[0][0]}</td>" in html
    empty = write_influential_examples(tmp_path / "empty", tmp_path / "nowhere")
    assert all(f.stat().st_size > 1000 for f in empty)
