"""CEM [69]: FISTA's step in closed form, PP/PN against the analytic optimum of a linear model (and scipy on the
same problem), the feasible sets, the autoencoder term, validity on a trained net, the record."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import optimize
from torch import nn

from nnxai.data import DatasetInfo, PreparedSplit
from nnxai.explanations import LocalRules
from nnxai.explanations.records import condition_holds
from nnxai.methods.base import ExplainContext
from nnxai.methods.rule.local import _cem_solver as solver
from nnxai.methods.rule.local.cem import CEM
from nnxai.metrics.contrastive import PPPNValidity
from nnxai.metrics.rules import RuleSize
from nnxai.ops.feature_space import predict_classes
from rule_helpers import trained_monks_context

SETTINGS = solver.CEMSettings(kappa=0.1, beta=0.1, gamma=0.0, c_init=10.0, c_steps=12, max_iter=300, lr=0.05)
PARAMS = {"n_explain": 40, "batch_size": 20, "kappa": 0.1, "beta": 0.1, "gamma": 0.0, "c_init": 10.0, "c_steps": 5,
          "max_iter": 100, "lr": 0.01, "ae_epochs": 2}


def linear_net(w: np.ndarray, bias: float) -> nn.Module:
    """Two logits whose difference ``z0 - z1 = w . x + bias`` (class 0 where it is positive)."""
    net = nn.Linear(len(w), 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor(np.stack([w / 2, -w / 2]), dtype=torch.float32))
        net.bias.copy_(torch.tensor([bias / 2, -bias / 2], dtype=torch.float32))
    return net.eval()


def box(lo: np.ndarray, hi: np.ndarray, absent: np.ndarray) -> solver.Domain:
    t = lambda v: torch.tensor(v, dtype=torch.float32)[None]  # noqa: E731
    return solver.Domain(t(absent), t(lo), t(hi), "test")


def elastic_solution(w: np.ndarray, lam: float, beta: float, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``argmin_d lam w.d + beta |d|_1 + |d|^2`` on the box, coordinate by coordinate (closed form)."""
    return np.clip(-np.sign(w) * np.maximum(lam * np.abs(w) - beta, 0) / 2, low, high)


def least_elastic_net(w, s, beta, low, high, kappa, sign):
    """The analytic optimum of ``min beta |d|_1 + |d|^2`` subject to ``sign * (s + w.d) <= -kappa`` on the box
    (KKT: ``d(lam)`` for the multiplier ``lam`` that makes the constraint tight, found by bisection)."""
    g = sign * w
    value = lambda lam: sign * (s + w @ elastic_solution(g, lam, beta, low, high))  # noqa: E731
    lo_, hi_ = 0.0, 1.0
    while value(hi_) > -kappa:
        hi_ *= 2
        assert hi_ < 1e6, "the constraint cannot be met inside the box"
    for _ in range(200):
        mid = (lo_ + hi_) / 2
        lo_, hi_ = (mid, hi_) if value(mid) > -kappa else (lo_, mid)
    return elastic_solution(g, hi_, beta, low, high)


def scipy_least_elastic_net(w, s, beta, low, high, kappa, sign):
    """The same problem by SLSQP on ``d = u - v`` (u, v >= 0 make the L1 term smooth): an independent solver."""
    d = len(w)
    fun = lambda z: beta * z.sum() + ((z[:d] - z[d:]) ** 2).sum()  # noqa: E731
    cons = [{"type": "ineq", "fun": lambda z: -kappa - sign * (s + w @ (z[:d] - z[d:]))}]
    bounds = [(0, max(h, 0)) for h in high] + [(0, max(-lo, 0)) for lo in low]
    best = optimize.minimize(fun, np.full(2 * d, 0.1), bounds=bounds, constraints=cons, method="SLSQP",
                             options={"ftol": 1e-12, "maxiter": 1000})
    assert best.success, best.message
    return best.x[:d] - best.x[d:]


def test_shrink_project_is_the_proximal_map():
    """``clamp(S_tau(z))`` minimises ``tau |d| + (d - z)^2 / 2`` on ``[low, high]``: checked on a dense grid."""
    rng = np.random.default_rng(0)
    z = torch.tensor(rng.normal(scale=2, size=400))
    low, high = torch.tensor(-rng.uniform(0, 2, 400)), torch.tensor(rng.uniform(0, 2, 400))
    low[:50], high[50:100] = 0.0, 0.0                      # one-sided boxes, as PN/PP have
    tau = 0.3
    got = solver.shrink_project(z, tau, low, high).numpy()
    grid = np.linspace(-2, 2, 40001)
    for k in range(400):
        feasible = grid[(grid >= low[k].item()) & (grid <= high[k].item())]
        best = feasible[np.argmin(tau * np.abs(feasible) + (feasible - z[k].item()) ** 2 / 2)]
        assert got[k] == pytest.approx(best, abs=1e-4)
    # soft-thresholding inside the box: exact zeros for |z| <= tau
    inner = solver.shrink_project(torch.tensor([0.2, -0.29, 1.0, -1.0]), tau, torch.full((4,), -5.0), torch.full((4,), 5.0))
    np.testing.assert_allclose(inner.numpy(), [0.0, 0.0, 0.7, -0.7], atol=1e-12)


def test_feasible_sets_relative_to_the_absent_value():
    """PN: away from the absent value only (either way at it), inside the box; PP: between absent and x0."""
    dom = box(np.array([0.0, -3.0, -3.0, 0.0]), np.array([1.0, 3.0, 3.0, 1.0]), np.array([0.0, 0.0, 0.0, 0.0]))
    x0 = torch.tensor([[0.0, 1.0, -2.0, 0.6]])
    centre, low, high = solver.delta_bounds("pn", x0, dom)
    np.testing.assert_allclose(low.numpy(), [[0.0, 0.0, -1.0, 0.0]])
    np.testing.assert_allclose(high.numpy(), [[1.0, 2.0, 0.0, 0.4]], atol=1e-6)
    assert torch.equal(centre, x0)
    centre, low, high = solver.delta_bounds("pp", x0, dom)
    np.testing.assert_allclose(low.numpy(), [[0.0, 0.0, -2.0, 0.0]])
    np.testing.assert_allclose(high.numpy(), [[0.0, 1.0, 0.0, 0.6]], atol=1e-6)
    assert torch.equal(centre, dom.absent)


def test_input_domain_images_and_tables():
    images = torch.rand(20, 1, 4, 4) * 0.9 + 0.05
    images[0, 0, 0, 0], images[1, 0, 1, 1] = 0.0, 1.0
    dom = solver.input_domain("image", images)
    assert float(dom.absent.max()) == float(dom.lower.min()) == 0.0 and float(dom.upper.min()) == 1.0
    table = torch.tensor([[0.0, 1.5, 1.0], [1.0, -0.5, 0.0], [1.0, 2.0, 0.0]])
    dom = solver.input_domain("tabular", table)
    np.testing.assert_allclose(dom.absent.numpy(), [[0.0, 1.0, 0.0]])       # binary: 0; continuous: its mean
    np.testing.assert_allclose(dom.lower.numpy(), [[0.0, -0.5, 0.0]])
    np.testing.assert_allclose(dom.upper.numpy(), [[1.0, 2.0, 1.0]])


def test_fista_at_fixed_c_reaches_the_closed_form_minimiser():
    """Linear model, ``c`` small enough that the hinge stays active: Eq. 1's minimiser is separable, the
    elastic-net shrinkage of ``-c w`` clipped to the PN's box; FISTA's last iterate matches it."""
    w = np.array([2.0, -1.5, 0.3, 0.8, -0.05])
    net, x0 = linear_net(w, 1.0), np.array([0.4, -0.6, 0.5, 0.1, -0.2])
    dom = box(np.full(5, -2.0), np.full(5, 2.0), np.zeros(5))
    c = 0.4
    s = solver.CEMSettings(kappa=0.1, beta=0.1, gamma=0.0, c_init=c, c_steps=1, max_iter=2000, lr=0.05)
    x = torch.tensor(x0[None], dtype=torch.float32)
    last, _, _ = solver.fista(net, "pn", x, torch.tensor([0]), torch.tensor([c]), s, dom)
    _, low, high = solver.delta_bounds("pn", x, dom)
    expected = elastic_solution(w, c, 0.1, low.numpy()[0], high.numpy()[0])
    assert w @ (x0 + expected) + 1.0 > -0.1                 # the hinge is active at the optimum
    np.testing.assert_allclose(last.numpy()[0], expected, atol=2e-3)
    assert expected[2] == 0.0 and expected[4] == 0.0        # |c w_j| <= beta: exactly zero (sparsity)


@pytest.mark.parametrize("mode", ["pn", "pp"])
def test_search_finds_the_least_elastic_net_explanation(mode):
    """Over the search on ``c``, CEM returns the successful point of least elastic-net size: on a linear model
    that is the analytic optimum of ``min beta|d|_1 + |d|^2`` s.t. the margin condition, which scipy's SLSQP
    on the same problem confirms."""
    w = np.array([1.5, -1.0, 0.6, -0.9, -0.3, 0.05])
    x0 = np.array([0.8, 0.3, 0.4, 0.2, 0.0, -0.3])           # feature 4 at its absent value: PN either way
    bias = -0.5                                              # the absent point is class 1: the PP is not empty
    assert w @ x0 + bias > 0.1                               # class 0 with a margin
    absent = np.zeros(6)
    dom = box(np.full(6, -1.5), np.full(6, 1.5), absent)
    x = torch.tensor(x0[None], dtype=torch.float32)
    _, low, high = solver.delta_bounds(mode, x, dom)
    low, high = low.numpy()[0].astype(np.float64), high.numpy()[0].astype(np.float64)
    # PN: w.(x0 + d) + bias <= -kappa; PP: -(w.(a + d) + bias) <= -kappa
    s_, sign = (w @ x0 + bias, 1.0) if mode == "pn" else (w @ absent + bias, -1.0)
    analytic = least_elastic_net(w, s_, 0.1, low, high, 0.1, sign)
    np.testing.assert_allclose(scipy_least_elastic_net(w, s_, 0.1, low, high, 0.1, sign), analytic, atol=2e-3)
    res = solver.search(linear_net(w, bias), mode, x, torch.tensor([0]), SETTINGS, dom)
    found = res["delta"].numpy()[0]
    assert np.isfinite(res["size"].item())
    np.testing.assert_allclose(found, analytic, atol=2e-3)   # measured: within 1e-4
    size = lambda d: 0.1 * np.abs(d).sum() + (d ** 2).sum()  # noqa: E731
    assert size(found) == pytest.approx(size(analytic), rel=5e-3)
    assert set(np.flatnonzero(found)) == set(np.flatnonzero(analytic))   # the same sparse support


def test_objective_has_the_autoencoder_term_and_the_ae_is_seeded():
    """Eq. 1 with gamma > 0 adds ``gamma ||x - AE(x)||^2``; the AE is trained on the train split from the
    method's seed alone (same seed, same weights; the global random state untouched)."""
    x = torch.rand(64, 1, 8, 8)
    dom = solver.input_domain("image", x)
    state = torch.random.get_rng_state()
    a = solver.train_autoencoder("image", x, dom, 2, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = solver.train_autoencoder("image", x, dom, 2, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    s = solver.CEMSettings(kappa=0.2, beta=0.1, gamma=3.0, c_init=1.0, c_steps=1, max_iter=1, lr=0.01)
    delta, target, c = torch.rand(2, 1, 8, 8) * 0.1, torch.tensor([0, 2]), torch.tensor([1.5, 0.5])
    point = x[:2] + delta
    with torch.no_grad():
        logits = net(point)
        m = logits[[0, 1], target] - torch.stack([logits[0, 1:].max(), logits[1, :2].max()])
        manual = (c * torch.clamp(m + 0.2, min=0) + 0.1 * delta.abs().sum((1, 2, 3)) + (delta ** 2).sum((1, 2, 3))
                  + 3.0 * ((point - a(point)) ** 2).sum((1, 2, 3)))
        got = solver.objective(net, "pn", x[:2], delta, target, c, s, a)
    np.testing.assert_allclose(got.numpy(), manual.numpy(), rtol=1e-5)


def test_validity_on_a_trained_net_and_the_record():
    """On a sigmoid MLP fitted to MONK-1: every PP the search reports keeps the class and every PN changes
    it when the metric rebuilds them from the record; PPs lie between absent and x, PNs only switch bits on;
    conditions are the PP's features; an explanation made wrong is caught."""
    ctx = trained_monks_context("monks1")
    net = ctx.model
    assert np.mean(predict_classes(net, ctx.test.x) == ctx.test.y.numpy()) >= 0.95
    record = CEM(**PARAMS).explain(ctx)
    scores = PPPNValidity()(record, ctx)
    pp_found = np.array([e["pp_found"] for e in record.explanations])
    pn_found = np.array([e["pn_found"] for e in record.explanations])
    np.testing.assert_array_equal(scores["pp_pn_validity.pp"].values, pp_found)
    np.testing.assert_array_equal(scores["pp_pn_validity.pn"].values, pn_found)
    # what it reaches on this net (measured 1.0 and 1.0): every search succeeds
    assert pp_found.mean() == 1.0 and pn_found.mean() == 1.0 and scores["pp_pn_validity"] == 1.0
    x = ctx.test.x[record.indices].numpy()
    for k, e in enumerate(record.explanations):
        pp = np.zeros(17)
        for j, v in e["pertinent_positive"]:
            pp[j] = v
        assert np.all((pp >= 0) & (pp <= x[k] + 1e-7))          # a part of what is present (absent: 0)
        for j, v in e["pertinent_negative"]:
            assert x[k, j] == 0.0 and 0 < v <= 1.0                # only what is missing is added
        assert e["pp_features"] == [record.feature_names[j] for j, _ in e["pertinent_positive"]]
        lits = [c["literals"][0] for c in e["conditions"]]
        assert [lit["feature"] for lit in lits] == [j for j, _ in e["pertinent_positive"]]
        assert condition_holds({"m": len(lits), "literals": lits}, x[k:k + 1]).all() if lits else True
        head = f"class {record.class_names[record.targets[k]]} "
        assert e["text"].startswith(head + ("because features {" if lits else "even with every feature absent"))
        assert f"not class {record.class_names[e['pn_class']]} because {{" in e["text"]
    sizes = RuleSize()(record, ctx)["rule_size"].values
    np.testing.assert_array_equal(sizes, [len(e["pertinent_positive"]) for e in record.explanations])
    broken = LocalRules(**{**record.__dict__, "explanations": [{**e, "pertinent_negative": []}
                                                                for e in record.explanations]})
    assert PPPNValidity()(broken, ctx)["pp_pn_validity.pn"] == 0.0


def test_images_same_seed_same_record_and_constraints(tmp_path):
    """A small CNN on random images: PP within [0, x], PN adds intensity only, inside [0, 1]; deterministic;
    the JSON round trip keeps everything; gamma > 0 trains the AE in fit."""
    from nnxai.models.networks import ConvNet
    torch.manual_seed(0)
    net = ConvNet(1, 3, widths=(4, 4, 4)).eval()
    x = torch.rand(30, 1, 12, 12) * (torch.rand(30, 1, 12, 12) > 0.6)
    info = DatasetInfo("toy", "image", 3, (1, 12, 12), False, False, "test toy")
    split = PreparedSplit(x=x, y=torch.zeros(30, dtype=torch.long), meta={})
    ctx = ExplainContext(model=net, dataset="toy", model_id="cnn", info=info, train=split, test=split, seed=1)
    params = {**PARAMS, "n_explain": 8, "batch_size": 5, "c_steps": 3, "max_iter": 20}
    a, b = CEM(**params).explain(ctx), CEM(**params).explain(ctx)
    assert a.explanations == b.explanations and a.extra == b.extra
    loaded = LocalRules.load(a.save(tmp_path / "cem.json"))
    assert loaded.explanations == a.explanations and loaded.feature_names[13] == "px[1,1]"
    flat = x[a.indices].reshape(8, -1).numpy()
    for k, e in enumerate(a.explanations):
        assert all(0 < v <= flat[k, j] + 1e-7 for j, v in e["pertinent_positive"])
        assert all(0 < v <= 1 - flat[k, j] + 1e-6 for j, v in e["pertinent_negative"])
    with_ae = CEM(**{**params, "gamma": 1.0, "n_explain": 2}).fit(net, split, seed=1, info=info)
    assert with_ae.autoencoder_ is not None and not any(p.requires_grad for p in with_ae.autoencoder_.parameters())
    assert CEM(**params).fit(net, split, info=info).autoencoder_ is None
