"""Activation maximisation [71], [93]-[98]: a planted unit whose preferred input is known in closed form, each
regulariser term and operator on known values (against scipy where it does the same job), the record on
``shapes`` and clear errors for unknown layers and units.

The planted network's unit ``lin:0`` is linear in the input, ``a(x) = w·x``, with ``w`` the first cosine of
the grid Laplacian with free borders along the rows (``w_{c,i,j} = s_c cos(π (i + ½) / H)``, channel signs
``s = (+1, -1, +1)``): zero-mean, smooth, and an eigenvector of the quadratic TV (``TV^2``) with eigenvalue
``λ₁ = 4 sin²(π / 2H)``.  Its training images are ``μ + t w + noise`` (``t`` uniform), so ``w`` is the data
manifold's one direction.  The maximiser of ``w·x`` is then, per regulariser:

* ``none``: on Erhan's ball ``||x - μ|| <= ρ`` (inside the box here), ``μ + ρ w / ||w||``;
* ``l2``: ``argmax w·x / s - λ ||x - μ||² / (D v)`` is ``μ + D v w / (2 λ s)`` (interior of the box);
* ``total_variation`` (β = 2): ``argmax w·x / s - λ TV²(x) / TV_real`` is ``μ + D TV_real w / (2 λ s λ₁)`` since
  ``w`` is an eigenvector of TV²'s Hessian ``2 L / D``;
* ``blur``, ``yosinski``, ``robust``: no penalty on ``w``'s direction: the ascent ends at the box's corner
  ``sign(w)`` (cosine with ``w``: ``E|cos| / rms cos = 2√2 / π ≈ 0.900``), smoothed by the blur, half its
  pixels (those of small norm) clipped to the mean by Yosinski's operator (``w`` restricted to them: cosine
  ``≈ 0.90``), or through a sigmoid;
* ``generator``: ``G`` inverts the unit's layer on data that vary along ``w`` only: ``G(h) = μ + t(h) w``.

Each variant is asserted to converge towards its own closed form (cosine similarity; magnitude too where the
maximiser is interior).  The test runs the default step size (0.05) for 200 steps.  A first version ran Adam
(lr 0.01, 300 steps): the interior maximisers were found, but ``none`` ended at the box's corner direction
``sign(w)`` (cosine 0.90 with ``w``) — Adam's per-coordinate steps are ``sign(g)`` for a constant gradient,
and their projection onto the ball converges to ``ρ sign(w)/||sign(w)||``, not to the ball's maximiser; the
method now takes normalised gradient steps (Wang et al.'s and Nguyen et al.'s rule), which find it.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from nnxai.data import DATASETS, PreparedSplit, shapes
from nnxai.explanations import UnitImages
from nnxai.methods.base import ExplainContext
from nnxai.methods.hidden_semantics import _activation_max_engine as engine
from nnxai.methods.hidden_semantics import _activation_max_generator as gen_module
from nnxai.methods.hidden_semantics import _activation_max_probe as probe
from nnxai.methods.hidden_semantics import _activation_max_regularisers as reg
from nnxai.methods.hidden_semantics.activation_max import ActivationMax
from nnxai.models.networks import ConvNet

C, H, W = 3, 12, 12
SIGNS = torch.tensor([1.0, -1.0, 1.0])
ALL = ["none", "l2", "blur", "total_variation", "yosinski", "generator", "robust"]


def planted_direction() -> torch.Tensor:
    rows = torch.cos(math.pi * (torch.arange(H, dtype=torch.float64) + 0.5) / H)
    return (SIGNS.double()[:, None, None] * rows[None, :, None].expand(C, H, W)).float()


def params(**over) -> dict:
    p = {"regularisers": ALL, "layers": "all", "units_per_layer": 1, "steps": 200, "lr": 0.05, "init_std": 0.01,
         "n_train": 400, "l2": {"weight": 1.0}, "total_variation": {"weight": 1.0, "beta": 2.0},
         "blur": {"sigma_start": 1.2, "sigma_end": 0.5, "decay": 0.99, "every": 10, "deblur_ratio": 0.8,
                  "deblur_iterations": 10},
         "yosinski": {"decay": 1e-4, "blur_sigma": 0.5, "blur_every": 4, "norm_percentile": 50.0,
                      "contribution_percentile": 0.0},
         "generator": {"kind": "linear", "width": 8, "epochs": 15, "batch_size": 50, "lr": 0.003, "feature_weight": 1.0,
                       "code_decay": 0.99, "code_std_bound": 3.0},
         "robust": {"decay_power": 1.0, "pad": 1, "jitter": 1, "scales": [1.0], "angles": [0.0]},
         "probe": {"bins": 8, "l2": 1.0}}
    p.update(over)
    return p


class PlantedNet(nn.Module):
    """``lin``: a full-image convolution, channel 0 = ``w·x`` (the planted unit), channel 1 silent (weights 0,
    bias -1, so the most active channel is 0); ReLU; a linear head."""

    architecture = "cnn"

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.lin = nn.Conv2d(C, 2, (H, W))
        self.act = nn.ReLU()
        self.classifier = nn.Linear(2, 2)
        with torch.no_grad():
            self.lin.weight.zero_()
            self.lin.weight[0] = w
            self.lin.bias.copy_(torch.tensor([0.0, -1.0]))
            self.classifier.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
            self.classifier.bias.zero_()

    def forward(self, x):
        return self.classifier(self.act(self.lin(x)).flatten(1))

    def unit_layers(self):
        return {"lin": self.act}


def planted_data(w: torch.Tensor, n: int = 400, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=g) * 2 - 1
    return 0.5 + 0.15 * t[:, None, None, None] * w + 0.01 * torch.randn((n, C, H, W), generator=g)


def context(model, x, info=None, y=None, **split_extra) -> ExplainContext:
    y = torch.zeros(len(x), dtype=torch.long) if y is None else y
    split = PreparedSplit(x=x, y=y, **split_extra)
    info = info or SimpleNamespace(name="planted", kind="image", class_names=["a", "b"], mask_names=(), concepts=())
    return ExplainContext(model=model, dataset="planted", model_id="toy", info=info, train=split, test=split, seed=0)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def planted():
    w = planted_direction()
    model = PlantedNet(w).eval()
    x = planted_data(w)
    method = ActivationMax(**params())
    ctx = context(model, x)
    method.fit(model, ctx.train, seed=0, info=ctx.info)
    record = method.label_units(model, ctx)
    return {"w": w, "x": x, "model": model, "method": method, "record": record}


def unit_image(record, regulariser, layer="lin", unit=0) -> torch.Tensor:
    i = next(k for k, u in enumerate(record.units)
             if u["layer"] == layer and u["unit"] == unit and u["regulariser"] == regulariser)
    return torch.as_tensor(record.images[i])


def test_planted_unit_is_the_one_visualised(planted):
    record = planted["record"]
    assert isinstance(record, UnitImages)
    # two classes and the most active channel of 'lin' (channel 0), once per regulariser
    assert [(u["layer"], u["unit"]) for u in record.units[:3]] == [("logits", 0), ("logits", 1), ("lin", 0)]
    assert len(record.units) == 3 * len(ALL) and record.images.shape == (3 * len(ALL), C, H, W)
    low, high = record.meta["input_range"]
    assert record.images.min() >= low - 1e-6 and record.images.max() <= high + 1e-6


def test_none_converges_to_the_ball_maximiser(planted):
    m, w, prior = planted["method"], planted["w"], planted["method"].prior_
    delta = unit_image(planted["record"], "none") - prior.mean[0]
    expected = prior.radius * w / w.norm()
    assert (prior.mean[0] + expected).min() > prior.low and (prior.mean[0] + expected).max() < prior.high
    assert cosine(delta, w) > 0.99
    assert float(delta.norm()) == pytest.approx(prior.radius, rel=0.02)
    assert m.params["regularisers"][0] == "none"


def _scale(method) -> float:
    return float(engine.finite_scale(method.stats_["lin"]["pre"])[0])


def test_l2_converges_to_its_closed_form(planted):
    m, w = planted["method"], planted["w"]
    prior = m.prior_
    d = C * H * W
    expected = d * prior.variance * w / (2 * 1.0 * _scale(m))
    assert float(expected.abs().max()) < min(prior.high - 0.5, 0.5 - prior.low)       # interior of the box
    delta = unit_image(planted["record"], "l2") - prior.mean[0]
    assert cosine(delta, w) > 0.99
    assert float(delta.norm()) == pytest.approx(float(expected.norm()), rel=0.1)


def test_total_variation_converges_to_its_closed_form(planted):
    m, w = planted["method"], planted["w"]
    prior = m.prior_
    lam1 = 4 * math.sin(math.pi / (2 * H)) ** 2
    expected = C * H * W * prior.tv_real * w / (2 * 1.0 * _scale(m) * lam1)
    delta = unit_image(planted["record"], "total_variation") - prior.mean[0]
    assert cosine(delta, w) > 0.99
    if float(expected.abs().max()) < min(prior.high - 0.5, 0.5 - prior.low):
        assert float(delta.norm()) == pytest.approx(float(expected.norm()), rel=0.1)


@pytest.mark.parametrize("name", ["blur", "yosinski", "robust", "generator"])
def test_unpenalised_variants_converge_towards_w(planted, name):
    # box corner sign(w): cosine 2√2/π ≈ 0.900 with w; Yosinski's clip of the small-norm half: ≈ 0.90
    corner = torch.sign(planted["w"])
    assert cosine(corner, planted["w"]) == pytest.approx(2 * math.sqrt(2) / math.pi, abs=0.01)
    delta = unit_image(planted["record"], name) - planted["method"].prior_.mean[0]
    assert cosine(delta, planted["w"]) > 0.85, name


def test_generator_is_fitted_and_bounded(planted):
    m = planted["method"]
    info = m.generator_info_
    assert info["code_layer"] == "lin" and info["code_shape"] == [2, 1, 1] and info["kind"] == "linear"
    # reconstruction: the codes carry t (channel 0 = relu(w·x)): far below the data's variance
    assert info["reconstruction_mse"] < 0.5 * m.prior_.variance
    assert (m.prior_.code_lower <= m.prior_.code_upper).all()


def test_linear_decoder_leave_one_out_is_brute_force():
    g = torch.Generator().manual_seed(6)
    codes, images = torch.rand(12, 3, 2, 2, generator=g), torch.rand(12, 2, 3, 3, generator=g)
    dec = gen_module.LinearDecoder(codes, images, 0.0, 1.0)
    errors = []
    for i in range(12):               # refit without image i at the chosen λ, predict it
        keep = [j for j in range(12) if j != i]
        scale = gen_module._channel_spread(codes)                       # the scale of all 12, as the fit uses
        phi = (codes / scale).flatten(1).double()
        mp, mx = phi[keep].mean(0), images[keep].double().mean(0).flatten()
        pc, xc = phi[keep] - mp, images[keep].double().flatten(1) - mx
        alpha = torch.linalg.solve(pc @ pc.T + dec.ridge * torch.eye(11, dtype=torch.float64), xc)
        pred = mx + (phi[i] - mp) @ pc.T @ alpha
        errors.append(((pred - images[i].double().flatten()) ** 2).mean())
    # the closed form (hat matrix 11ᵀ/n + U S/(S+λ) Uᵀ) is exact: the refits, intercept included, agree
    assert dec.loo_mse == pytest.approx(float(torch.stack(errors).mean()), rel=1e-6)
    # at the chosen λ the fit reproduces the least-squares prediction on the training codes
    with torch.no_grad():
        assert dec(codes).shape == images.shape and float((dec(codes) - images).pow(2).mean()) < float(images.var())


def test_upconv_generator_learns_and_leads_towards_w():
    w = planted_direction()
    model, x = PlantedNet(w).eval(), planted_data(w)
    method = ActivationMax(**params(regularisers=["generator"],
                                    generator={**params()["generator"], "kind": "upconv"}))
    ctx = context(model, x)
    method.fit(model, ctx.train, seed=0, info=ctx.info)
    assert method.generator_info_["kind"] == "upconv"
    assert method.generator_info_["reconstruction_mse"] < method.prior_.variance
    record = method.label_units(model, ctx)
    delta = unit_image(record, "generator") - method.prior_.mean[0]
    assert cosine(delta, w) > 0.85


def test_recorded_activation_is_the_units_value_at_the_image(planted):
    record, x, w = planted["record"], planted["x"], planted["w"]
    real_max = float(torch.relu(torch.einsum("nchw,chw->n", x, w)).max())          # n_train = all 400 inputs
    for name in ALL:
        u = next(u for u in record.units if u["layer"] == "lin" and u["regulariser"] == name)
        assert u["reference_max"] == pytest.approx(real_max, rel=1e-5)
        value = float(torch.einsum("chw,chw->", unit_image(record, name), w))
        assert u["objective"] == pytest.approx(value, rel=1e-4, abs=1e-4)
        assert u["activation"] == pytest.approx(max(value, 0.0), rel=1e-4, abs=1e-4)


# -- the terms and operators on known values ------------------------------------------------------------------

def test_l2_penalty_known_value():
    x = torch.full((2, 1, 2, 2), 0.5)
    x[1] = 1.5
    assert reg.l2_penalty(x, torch.full((1, 1, 2, 2), 0.5), 0.25).tolist() == [0.0, 4.0]


def test_total_variation_known_values():
    const = torch.full((1, 2, 5, 4), 0.3)
    assert reg.total_variation(const, 1.0).item() == 0.0
    stripes = (torch.arange(4) % 2).float().expand(1, 2, 5, 4)          # columns 0 1 0 1
    # |dx| = 1 in the 3 of 4 columns that have a right neighbour, dy = 0
    assert reg.total_variation(stripes, 1.0).item() == pytest.approx(3 / 4)
    assert reg.total_variation(stripes, 2.0).item() == pytest.approx(3 / 4)
    # a cosine of the free-border Laplacian: Σ (w_{i+1} - w_i)² = λ₁ Σ w_i²
    w = planted_direction()[None]
    lam1 = 4 * math.sin(math.pi / (2 * H)) ** 2
    assert reg.total_variation(w, 2.0).item() == pytest.approx(lam1 * float((w * w).mean()), rel=1e-5)
    # isotropic: [[0, 1], [1, 0]]: sqrt(1 + 1) at the top-left pixel, 1 at the two with one neighbour
    corner = torch.zeros(1, 1, 2, 2)
    corner[0, 0, 0, 1] = corner[0, 0, 1, 0] = 1.0
    assert reg.total_variation(corner, 1.0).item() == pytest.approx((math.sqrt(2) + 2) / 4)


@pytest.mark.parametrize("sigma", [0.5, 1.2, 2.0])
def test_gaussian_blur_is_scipys(sigma):
    x = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="nearest", truncate=3.0)
    assert np.allclose(reg.gaussian_blur(x, sigma).numpy(), expected, atol=1e-12)
    assert torch.equal(reg.gaussian_blur(x, 0.0), x)


def test_richardson_lucy_is_the_papers_iteration():
    g = torch.Generator().manual_seed(2)
    truth = 0.2 + torch.rand(1, 1, 16, 16, generator=g, dtype=torch.float64)
    observed = reg.gaussian_blur(truth, 1.0)
    got = reg.richardson_lucy(observed, 1.0, 10)

    def blur(a):
        return ndimage.gaussian_filter(a, 1.0, mode="nearest", truncate=3.0)

    u = observed.numpy()[0, 0].copy()
    for _ in range(10):                   # u <- u * K^T (d / (K u)), K symmetric
        u = u * blur(observed.numpy()[0, 0] / blur(u))
    assert np.allclose(got.numpy()[0, 0], u, atol=1e-10)
    # and it moves back towards the sharp image
    assert (got - truth).norm() < (observed - truth).norm()
    with pytest.raises(ValueError, match="positive"):
        reg.richardson_lucy(observed - 1.0, 1.0, 2)


def test_blur_deblur_phases():
    x = 0.1 + torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(reg.blur_deblur(x, 0, 1.0, 10, 0.8, 10, 0.0, 1.0), reg.gaussian_blur(x, 1.0))
    assert torch.equal(reg.blur_deblur(x, 3, 1.0, 10, 0.8, 10, 0.0, 1.0), x)
    shift = -1e-3
    expected = reg.richardson_lucy(x - shift, 0.8, 10) + shift
    assert torch.allclose(reg.blur_deblur(x, 15, 1.0, 10, 0.8, 10, 0.0, 1.0), expected)


def test_yosinski_operator_known_values():
    delta = torch.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    grad = torch.ones_like(delta)
    # decay only
    assert torch.allclose(reg.yosinski_clip(delta, grad, 0, 0.1, 0.0, 0, 0.0, 0.0), 0.9 * delta)
    # 50th percentile of the norms 1..16 is 8.5: the 8 smallest pixels are zeroed
    clipped = reg.yosinski_clip(delta, grad, 0, 0.0, 0.0, 0, 50.0, 0.0)
    assert torch.equal(clipped, torch.where(delta > 8.5, delta, torch.zeros_like(delta)))
    # contribution |x ∘ ∇a|: a gradient that is 0 on the largest pixels makes them the ones clipped
    grad2 = torch.where(delta > 12, torch.zeros_like(delta), torch.ones_like(delta))
    kept = reg.yosinski_clip(delta, grad2, 0, 0.0, 0.0, 0, 0.0, 25.0) != 0
    assert not kept[delta > 12].any()
    # the blur happens on every blur_every-th step only
    assert torch.equal(reg.yosinski_clip(delta, grad, 0, 0.0, 1.0, 2, 0.0, 0.0), delta)
    assert torch.allclose(reg.yosinski_clip(delta, grad, 1, 0.0, 1.0, 2, 0.0, 0.0), reg.gaussian_blur(delta, 1.0))


def test_project_ball():
    d = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    assert torch.allclose(reg.project_ball(d, 1.0), torch.tensor([[0.6, 0.8], [0.3, 0.4]]))


def test_colour_decorrelation_square_root():
    g = np.random.default_rng(4)
    pixels = g.normal(size=(5000, 3)) @ np.array([[1.0, 0.5, 0.2], [0.0, 1.0, 0.3], [0.0, 0.0, 0.5]])
    m = reg.colour_sqrt(pixels)
    cov = np.cov(pixels, rowvar=False)
    scale = (m @ m.T)[0, 0] / cov[0, 0]
    assert np.allclose(m @ m.T, scale * cov)
    assert np.linalg.norm(m, axis=0).max() == pytest.approx(1.0)
    assert reg.colour_sqrt(np.ones((10, 1))).tolist() == [[1.0]]


def test_fourier_image_known_renders():
    img = reg.FourierImage((3, 8, 8), 1.0, np.eye(3), 0.0, 2.0)
    zero = torch.zeros(img.spectrum_shape(2))
    assert torch.allclose(img.render(zero), torch.ones(2, 3, 8, 8))            # sigmoid(0) = mid-range
    # one DC coefficient: irfft2 gives scale_0 · X / (H W) everywhere, then / 4, then the sigmoid
    spec = torch.zeros(img.spectrum_shape(1))
    spec[0, 1, 0, 0, 0] = 2.0
    dc = float(img.scale[0, 0]) * 2.0 / 64 / reg.LUCID_FFT_SCALE
    out = img.render(spec)
    assert torch.allclose(out[0, 1], torch.full((8, 8), 2.0 / (1 + math.exp(-dc))))
    assert torch.allclose(out[0, 0], torch.ones(8, 8))


def test_random_transform_identity_and_shift():
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(reg.random_transform(x, g, 2, 0, [1.0], [0.0], fill=0.5), x, atol=1e-6)
    # jitter 1 draws a shift in {-1, 0, 1}²: every output is x shifted by whole pixels, padded with the fill
    out = reg.random_transform(x, torch.Generator().manual_seed(1), 1, 1, [1.0], [0.0], fill=0.5)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), value=0.5)
    for i in range(2):
        assert any(torch.allclose(out[i], padded[i, :, 1 + dy:7 + dy, 1 + dx:7 + dx], atol=1e-6)
                   for dx in (-1, 0, 1) for dy in (-1, 0, 1))


# -- shapes: the record, concept names, clear errors ------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes_run():
    d = shapes.generate(300, 7)
    x = torch.as_tensor(d["x"])
    y = torch.as_tensor(d["y"])
    torch.manual_seed(0)
    model = ConvNet(3, 2, widths=(4, 6, 8)).eval()
    split = PreparedSplit(x=x, y=y, concepts=d["concepts"], masks=d["masks"],
                          meta={"mask_names": list(shapes.MASK_NAMES), "class_names": list(shapes.CLASS_NAMES)})
    ctx = ExplainContext(model=model, dataset="shapes", model_id="toy", info=DATASETS["shapes"], train=split,
                         test=split, seed=1)
    method = ActivationMax(**params(steps=5, n_train=200, units_per_layer=2,
                                    generator={**params()["generator"], "epochs": 1}))
    return method, ctx, method.explain(ctx)


def test_shapes_record_names_concepts_and_stays_in_range(shapes_run):
    _, ctx, record = shapes_run
    layers = list(ctx.model.unit_layers())
    assert record.meta["layers"] == layers and record.meta["regularisers"] == ALL
    assert len(record.units) == (2 + 2 * len(layers)) * len(ALL)
    assert record.images.min() >= 0.0 and record.images.max() <= 1.0           # shapes' input range
    units = [u for u in record.units if u["layer"] != "logits"]
    assert all(u["concept"] in shapes.MASK_NAMES for u in units)
    assert set(record.concepts) <= set(shapes.MASK_NAMES) and "texture=solid" in record.concepts
    classes = [u for u in record.units if u["layer"] == "logits"]
    assert {u["class_name"] for u in classes} == {"negative", "positive"}
    assert all(set(u["probe"]) == set(record.concepts) for u in record.units)
    assert record.meta["generator"]["n_parameters"] > 0


def test_unknown_layer_and_unit_name_what_exists(shapes_run):
    method, ctx, _ = shapes_run
    bad = ActivationMax(**params(layers=["conv9"], steps=1, regularisers=["l2"], n_train=50))
    bad.fit(ctx.model, ctx.train, seed=0, info=ctx.info)
    with pytest.raises(ValueError, match=r"conv9.*conv1, conv2, conv3"):
        bad.label_units(ctx.model, ctx)
    wide = ActivationMax(**params(units_per_layer=9, steps=1, regularisers=["l2"], n_train=50))
    wide.fit(ctx.model, ctx.train, seed=0, info=ctx.info)
    with pytest.raises(ValueError, match=r"units_per_layer 9 .*'conv1'.* 4 channels"):
        wide.label_units(ctx.model, ctx)
    widths = {"logits": 2, "conv1": 4}
    with pytest.raises(ValueError, match=r"unit 4 of layer 'conv1' does not exist: it has 4 channels \(0..3\)"):
        engine.check_targets([engine.Target("conv1", 4)], widths)
    with pytest.raises(ValueError, match=r"unknown unit layer 'fc'.*logits, conv1"):
        engine.check_targets([engine.Target("fc", 0)], widths)


def test_concept_probes_read_real_shapes_above_chance():
    train, test = shapes.generate(600, 21), shapes.generate(300, 22)
    columns = list(DATASETS["shapes"].concepts)
    probes = probe.ConceptProbes(8, 1.0).fit(train["x"], train["concepts"], columns)
    assert probes.names_ == ["shape=circle", "shape=square", "shape=triangle", "texture=stripes",
                             "colour=red", "colour=green", "colour=blue"]
    accuracy = probes.balanced_accuracy(test["x"], test["concepts"])
    assert min(accuracy.values()) > 0.6, accuracy
    assert min(accuracy[c] for c in ("texture=stripes", "colour=red", "colour=green", "colour=blue")) > 0.9


def test_named_concept_is_the_largest_gain_over_the_prior():
    names = ["a=1", "b=1"]
    reading, prior = np.array([0.6, 0.3]), np.array([0.5, 0.1])
    assert probe.named_concept(reading, prior, names)[0] == "b=1"          # 0.3 vs 0.1 beats 0.6 vs 0.5
    full, probs, pri = probe.concept_readings(reading[None], names, prior, ["a=1", "a=0", "b=1", "b=2", "b=3"])
    assert full == ["a=1", "b=1", "a=0"] and np.allclose(probs[0], [0.6, 0.3, 0.4]) and np.allclose(pri, [0.5, 0.1, 0.5])
