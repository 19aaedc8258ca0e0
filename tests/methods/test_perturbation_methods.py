"""Perturbation and model-agnostic attribution: prediction difference [108], meaningful perturbation
(2nd survey [25]), LIME [20] and MAPLE [101], checked on closed-form cases and planted ground truths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from sklearn.metrics.pairwise import cosine_distances

from nnxai.data import PreparedSplit
from nnxai.methods.attribution.perturbation._conditional_gaussian import Gaussian, conditional, fit_gaussian
from nnxai.methods.attribution.perturbation.lime import Lime, coin_samples, proximity, superpixels
from nnxai.methods.attribution.perturbation.maple import Maple, grid_index, leaf_weights
from nnxai.methods.attribution.perturbation.meaningful_perturbation import (MeaningfulPerturbation, adam_update,
                                                                           gaussian_blur)
from nnxai.methods.attribution.perturbation.prediction_difference import (PredictionDifference, fit_window_gaussian,
                                                                         laplace)
from nnxai.params import ParamError
from probability_models import ProbabilityLinear
from toy_models import RegionSumModel, tiny_convnet, toy_context

PDA = dict(n_explain=4, batch_size=4, window=2, padding=1, stride=1, n_samples=4)
MP = dict(n_explain=4, batch_size=4, fill="zero", score="probability", mask_size=16, sigma=2.0, steps=150, lr=0.1,
          lambda_l1=0.05, lambda_tv=0.0, tv_beta=3.0)
LIME = dict(n_explain=4, batch_size=4, fill="zero", n_segments=12, compactness=20.0, n_samples=300,
            kernel_width=0.25, alpha=0.0)
MAPLE = dict(n_explain=4, batch_size=4, patch=4, n_trees=20, min_samples_leaf=20, max_features=0.5, alpha=0.0)


def split(x: torch.Tensor) -> PreparedSplit:
    """A train split holding the inputs ``x`` (labels 0)."""
    return PreparedSplit(x=x, y=torch.zeros(len(x), dtype=torch.long))


def correlated_table(n: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """``n`` rows of a 3-feature normal with strong correlations, and its covariance."""
    cov = np.array([[1.0, 0.7, 0.3], [0.7, 1.0, -0.4], [0.3, -0.4, 1.0]])
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.multivariate_normal([0.5, -1.0, 0.0], cov, size=n), dtype=torch.float32), cov


# --- prediction difference analysis --------------------------------------------------------------------

def test_conditional_gaussian_matches_the_bivariate_closed_form():
    mu, s1, s2, rho = np.array([1.0, -2.0]), 2.0, 0.5, 0.8
    cov = torch.tensor([[s1 ** 2, rho * s1 * s2], [rho * s1 * s2, s2 ** 2]], dtype=torch.float64)
    law = conditional(Gaussian(torch.as_tensor(mu), cov, 10), torch.tensor([0]), torch.tensor([1]))
    x2 = torch.tensor([-1.5], dtype=torch.float64)
    mean = mu[0] + rho * s1 / s2 * (x2.item() - mu[1])
    torch.testing.assert_close((law.A @ x2 + law.c).item(), mean, rtol=2e-4, atol=0)
    torch.testing.assert_close((law.L @ law.L.T).item(), s1 ** 2 * (1 - rho ** 2), rtol=2e-3, atol=0)
    draws = law.sample(x2, torch.randn(200_000, 1, generator=torch.Generator().manual_seed(0)))[:, 0]
    assert abs(draws.mean().item() - mean) < 0.01 and abs(draws.var().item() - s1 ** 2 * (1 - rho ** 2)) < 0.02


def test_fitted_gaussian_is_the_sample_mean_and_covariance():
    x, _ = correlated_table(500)
    fit = fit_gaussian(x)
    np.testing.assert_allclose(fit.mean.numpy(), x.double().numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(fit.cov.numpy(), np.cov(x.double().numpy().T), rtol=1e-10)


def test_window_gaussian_is_fitted_to_the_windows_a_loop_cuts_out():
    x = torch.rand(5, 2, 9, 9, generator=torch.Generator().manual_seed(0))
    side, step = 4, 2
    windows = [img[:, r:r + side, c:c + side].reshape(-1).double().numpy()
               for img in x for r in range(0, 9 - side + 1, step) for c in range(0, 9 - side + 1, step)]
    fit = fit_window_gaussian(x, side, step)
    assert fit.n_fit == len(windows) == 5 * 9
    np.testing.assert_allclose(fit.mean.numpy(), np.mean(windows, axis=0), rtol=1e-12)
    np.testing.assert_allclose(fit.cov.numpy(), np.cov(np.array(windows).T), atol=1e-12)


def test_table_weight_of_evidence_follows_the_conditional_mean_in_closed_form():
    x_train, _ = correlated_table(4000)
    weight = torch.tensor([0.08, 0.0, -0.05])
    model = ProbabilityLinear(weight)
    x = torch.tensor([[1.2, -0.3, 0.9]])
    method = PredictionDifference(**{**PDA, "n_samples": 20_000}).fit(model, split(x_train))
    evidence = method(model, x, torch.tensor([1]))[0].double()

    data = x_train.double().numpy()
    mu, cov = data.mean(0), np.cov(data.T)
    n, expected = len(data), []
    for i in range(3):
        rest = [j for j in range(3) if j != i]
        given = x[0, rest].double().numpy() - mu[rest]
        cond_mean = mu[i] + cov[i, rest] @ np.linalg.solve(cov[np.ix_(rest, rest)], given)
        p_without = 0.5 + float(weight[rest].double() @ x[0, rest].double()) + float(weight[i]) * cond_mean
        p, q = laplace(model.probability(x)[0], n, 2).item(), laplace(torch.tensor(p_without), n, 2).item()
        expected.append(math.log2(p / (1 - p)) - math.log2(q / (1 - q)))
    torch.testing.assert_close(evidence, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-2)
    assert abs(evidence[1]) < 1e-5                   # the model ignores feature 1 (float32 round-off only)
    assert abs(evidence[0]) > 0.05 and abs(evidence[2]) > 0.05


def test_image_evidence_is_zero_where_no_patch_meets_the_planted_region():
    region = torch.zeros(1, 12, 12)
    region[:, :4, :4] = 1
    model = RegionSumModel(region, scale=0.2)      # logit 1 ≈ 1.6: p_1 far from saturation
    gen = torch.Generator().manual_seed(0)
    x_train, x = torch.rand(40, 1, 12, 12, generator=gen), torch.rand(2, 1, 12, 12, generator=gen)
    out = PredictionDifference(**PDA).fit(model, split(x_train))(model, x, torch.tensor([1, 1]))
    # patches are 2x2 with stride 1: pixel (r, c) lies only in patches starting at rows r-1..r, cols c-1..c
    assert (out[:, :, 5:, :] == 0).all() and (out[:, :, :, 5:] == 0).all()
    assert (out[:, :, :4, :4] != 0).all()


def test_conditional_sampling_recovers_perfectly_correlated_pixels():
    """Train images are flat grey levels: the patch given its frame is the frame's level, so resampling
    leaves a flat image (almost) unchanged and any model sees (almost) no evidence; marginal sampling does."""
    levels = torch.rand(200, 1, 1, 1, generator=torch.Generator().manual_seed(1))
    x_train = levels.expand(200, 1, 10, 10).contiguous()
    model = tiny_convnet(0, in_channels=1, n_classes=3)
    x = torch.full((1, 1, 10, 10), 0.3)
    conditional_we = PredictionDifference(**PDA).fit(model, split(x_train))(model, x, torch.tensor([0]))
    marginal_we = PredictionDifference(**{**PDA, "padding": 0}).fit(model, split(x_train))(model, x, torch.tensor([0]))
    assert conditional_we.abs().max() < 0.01 * marginal_we.abs().max()


def test_prediction_difference_rejects_bad_settings_before_work():
    with pytest.raises(ParamError, match="'stride' \\(3\\) must not exceed 'window' \\(2\\)"):
        PredictionDifference(**{**PDA, "stride": 3})
    with pytest.raises(ParamError, match="'prediction_difference'.padding: -1 is out of range, expected >= 0"):
        PredictionDifference(**{**PDA, "padding": -1})
    model = tiny_convnet(0, in_channels=1, n_classes=3)
    with pytest.raises(ValueError, match="window \\+ 2·padding = 8 exceeds the image size"):
        PredictionDifference(**{**PDA, "window": 4, "padding": 2}).fit(model, split(torch.rand(4, 1, 6, 6)))
    method = PredictionDifference(**PDA).fit(model, split(torch.rand(4, 1, 10, 10)))
    with pytest.raises(ValueError, match="do not match the train split's \\(1, 10, 10\\)"):
        method(model, torch.rand(1, 1, 12, 12), torch.tensor([0]))


# --- meaningful perturbation ------------------------------------------------------------------------------

def test_blur_matches_scipy():
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = np.stack([[gaussian_filter(channel, sigma=2.0, mode="nearest", truncate=3.0) for channel in image]
                         for image in x.numpy()])
    np.testing.assert_allclose(gaussian_blur(x, 2.0).numpy(), expected, atol=1e-12)


def test_deletion_mask_covers_exactly_the_planted_region():
    region = torch.zeros(1, 16, 16)
    region[:, 4:8, 6:10] = 1
    model = RegionSumModel(region, scale=0.25)
    x = region[None].clone()                         # the object is the region: logit 1 = 4
    saliency = MeaningfulPerturbation(**MP).fit(model, split(x))(model, x, torch.tensor([1]))[0, 0]
    inside = region[0].bool()
    assert (saliency[~inside] == 0).all()            # deleting elsewhere only costs λ₁: m stays 1
    assert (saliency[inside] > 0.5).all()


def test_a_saturated_probability_deletes_nothing_and_the_logit_finds_the_region():
    region = torch.zeros(1, 16, 16)
    region[:, 4:8, 6:10] = 1
    model = RegionSumModel(region, scale=2.0)        # logit 1 = 32: p_1 = 1 − 1e-14, its gradient vanishes
    x = region[None].clone()
    inside = region[0].bool()
    saturated = MeaningfulPerturbation(**MP).fit(model, split(x))(model, x, torch.tensor([1]))[0, 0]
    assert (saturated == 0).all()                    # the L1 prior wins everywhere: an empty map
    logit = MeaningfulPerturbation(**{**MP, "score": "logit", "lambda_l1": 2.0}).fit(model, split(x))
    saliency = logit(model, x, torch.tensor([1]))[0, 0]
    assert (saliency[~inside] == 0).all() and (saliency[inside] > 0.5).all()


def test_low_resolution_mask_deletes_the_region_and_only_cells_that_reach_it():
    region = torch.zeros(1, 16, 16)
    region[:, 4:8, 4:8] = 1
    model = RegionSumModel(region, scale=0.25)
    params = {**MP, "mask_size": 4, "lambda_tv": 0.02}
    x = region[None].clone()
    saliency = MeaningfulPerturbation(**params).fit(model, split(x))(model, x, torch.tensor([1]))[0, 0]
    assert saliency[region[0].bool()].min() > 0.9
    # bilinear upsampling of 4x4 cells: rows/cols 14-15 read only the last cell row/column, whose
    # pixels 12-15 never touch the region: deleting them only costs λ₁ and TV, so they stay
    assert (saliency[14:, :] == 0).all() and (saliency[:, 14:] == 0).all()


def test_table_mask_deletes_only_the_features_the_model_uses():
    model = ProbabilityLinear(torch.tensor([0.2, 0.0, -0.2, 0.0]))
    x = torch.tensor([[0.75, 0.5, -0.75, -0.5]])     # p_1 = 0.8
    saliency = MeaningfulPerturbation(**MP).fit(model, split(x.expand(2, 4)))(model, x, torch.tensor([1]))[0]
    assert saliency[1] == 0 and saliency[3] == 0
    assert saliency[0] > 0.5 and saliency[2] > 0.5


def test_adam_update_matches_torch_adam():
    target = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    ours = torch.zeros(3, dtype=torch.float64)
    theirs = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([theirs], lr=0.05)
    moments = (torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    for step in range(1, 60):
        ours -= adam_update(2 * (ours - target) ** 3, moments, step, 0.05)
        theirs.grad = (2 * (theirs - target) ** 3).detach()
        optimiser.step()
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-10, atol=1e-12)


def test_meaningful_perturbation_rejects_bad_settings():
    with pytest.raises(ParamError, match="'meaningful_perturbation'.sigma: 0 is out of range, expected > 0"):
        MeaningfulPerturbation(**{**MP, "sigma": 0})
    with pytest.raises(ParamError, match="'meaningful_perturbation'.tv_beta: 0.5 is out of range, expected >= 1"):
        MeaningfulPerturbation(**{**MP, "tv_beta": 0.5})
    with pytest.raises(ParamError, match="'meaningful_perturbation'.score: 'margin' is not one of 'probability', "
                                         "'logit'"):
        MeaningfulPerturbation(**{**MP, "score": "margin"})


# --- LIME --------------------------------------------------------------------------------------------------

def test_lime_recovers_a_linear_model_on_a_table():
    weight = torch.tensor([0.1, -0.05, 0.0, 0.2])
    model = ProbabilityLinear(weight)
    x, reference = torch.tensor([[0.5, 1.0, -2.0, 0.3]]), torch.tensor([[0.1, -0.5, 0.4, 0.0]])
    method = Lime(**LIME).fit(model, split(x.expand(2, 4)))
    for c, sign in ((1, 1.0), (0, -1.0)):
        out = method(model, x, torch.tensor([c]), reference)[0]
        torch.testing.assert_close(out, sign * weight * (x[0] - reference[0]), rtol=0, atol=2e-6)


def test_lime_on_superpixels_gives_each_segment_its_share_of_a_linear_model():
    gen = torch.Generator().manual_seed(3)
    blocks = torch.rand(1, 3, 3, 3, generator=gen)   # a 3x3 grid of flat colours, for SLIC to find
    x = (blocks.repeat_interleave(4, 2).repeat_interleave(4, 3) + 0.05 * torch.rand(1, 3, 12, 12, generator=gen))
    weight = (torch.rand(3, 12, 12, generator=gen) - 0.5) * 0.01
    model = ProbabilityLinear(weight)
    out = Lime(**LIME).fit(model, split(x))(model, x, torch.tensor([1]), torch.zeros(1, 3, 12, 12))[0]
    segments = superpixels(x[0], LIME["n_segments"], LIME["compactness"])
    assert segments.max() >= 3
    for s in range(int(segments.max()) + 1):
        member = (segments == s).expand(3, 12, 12)
        expected = (weight * x[0])[member].sum()
        torch.testing.assert_close(out[member], expected.expand(int(member.sum())), rtol=1e-4, atol=2e-6)


def captum_lime(model, x, c, reference, method):
    """The same LIME fit run by Captum's ``Lime`` (one sample at a time): our coins, kernel and sklearn's Ridge."""
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime as CaptumLime

    index = method.feature_index(x)
    coins = coin_samples(x, int(index.max()) + 1, method.params["n_samples"], method.seed)

    def sampler(original, **kwargs):              # Captum asks for a generator function
        for row in coins:
            yield row[None].long()

    lime = CaptumLime(lambda z: model(z).softmax(dim=1),
                      interpretable_model=SkLearnRidge(alpha=float(method.params["alpha"])),
                      similarity_func=lambda _, __, row, **kw: float(proximity(row.double(),
                                                                                method.params["kernel_width"])),
                      perturb_func=sampler)
    with torch.no_grad():
        out = lime.attribute(x[None], baselines=reference, target=c, feature_mask=index[None],
                             n_samples=len(coins), perturbations_per_eval=64)
    return out[0], float(lime.interpretable_model.bias().reshape(-1)[0])


def test_lime_equals_captums_lime_with_the_same_samples():
    model = tiny_convnet(2, in_channels=3, n_classes=3)
    x = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(5))
    reference = torch.full((1, 3, 12, 12), 0.4)
    method = Lime(**{**LIME, "n_samples": 60, "alpha": 1.0}).fit(model, split(x), seed=4)
    method._intercepts = []
    ours = method(model, x, torch.tensor([0, 1, 2]), reference)
    for j in range(3):
        theirs, intercept = captum_lime(model, x[j], j, reference, method)
        torch.testing.assert_close(ours[j], theirs.to(ours.dtype), rtol=1e-4, atol=1e-6)
        assert method._intercepts[j] == pytest.approx(intercept, rel=1e-5)


def test_lime_kernel_is_the_exponential_of_the_cosine_distance():
    coins = coin_samples(torch.rand(5), 7, 40, seed=0)
    assert coins[0].all() and set(coins.unique().tolist()) <= {0.0, 1.0}
    coins[1] = 0
    distance = cosine_distances(coins.numpy(), np.ones((1, 7)))[:, 0]
    distance[1] = 1.0                                # sklearn's distance of the zero vector
    np.testing.assert_allclose(proximity(coins, 0.25).numpy(), np.exp(-distance ** 2 / 0.25 ** 2), atol=1e-12)


def test_superpixels_are_deterministic_and_labelled_densely():
    x = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0))
    a, b = superpixels(x, 10, 20.0), superpixels(x.clone(), 10, 20.0)
    assert torch.equal(a, b) and a.shape == (16, 16)
    assert torch.equal(a.unique(), torch.arange(int(a.max()) + 1)) and a[0, 0] == 0


def test_lime_rejects_bad_settings():
    with pytest.raises(ParamError, match="'lime'.kernel_width: 0 is out of range, expected > 0"):
        Lime(**{**LIME, "kernel_width": 0})
    with pytest.raises(ParamError, match="'lime'.n_samples: 1 is out of range, expected >= 2"):
        Lime(**{**LIME, "n_samples": 1})


# --- MAPLE -------------------------------------------------------------------------------------------------

def test_leaf_weights_match_the_authors_loop():
    rng = np.random.default_rng(0)
    train, query = rng.integers(0, 4, size=(30, 5)), rng.integers(0, 4, size=(3, 5))
    for b in range(3):
        slow = np.zeros(30)
        for k in range(5):                            # MAPLE's training_point_weights
            same = train[:, k] == query[b, k]
            if same.sum() > 0:
                slow[same] += 1.0 / same.sum()
        np.testing.assert_allclose(leaf_weights(train, query)[b], slow, rtol=1e-12)


def test_maple_recovers_a_linear_model_on_a_table():
    weight = torch.tensor([0.1, -0.05, 0.0, 0.15])
    model = ProbabilityLinear(weight)
    gen = torch.Generator().manual_seed(0)
    x_train, x = torch.rand(300, 4, generator=gen) * 2 - 1, torch.rand(3, 4, generator=gen) * 2 - 1
    method = Maple(**MAPLE).fit(model, split(x_train))
    torch.testing.assert_close(method(model, x, torch.tensor([1, 1, 0])),
                               torch.stack([weight, weight, -weight]), rtol=0, atol=1e-5)


def test_maple_on_images_recovers_the_weights_of_grid_cell_means():
    index = grid_index((3, 8, 8), 4)                  # 3 channels x 4 cells
    cell_weight = torch.linspace(-0.1, 0.1, 12)
    weight = cell_weight[index] / 16                  # p_1 = 0.5 + Σ_j cell_weight_j · mean of cell j
    model = ProbabilityLinear(weight)
    gen = torch.Generator().manual_seed(1)
    x_train, x = torch.rand(400, 3, 8, 8, generator=gen), torch.rand(2, 3, 8, 8, generator=gen)
    out = Maple(**MAPLE).fit(model, split(x_train))(model, x, torch.tensor([1, 1]))
    torch.testing.assert_close(out, cell_weight[index].expand(2, 3, 8, 8), rtol=0, atol=1e-5)


def test_maple_records_intercepts_for_the_local_fidelity_metric():
    weight = torch.tensor([0.1, -0.05, 0.0, 0.15])
    gen = torch.Generator().manual_seed(2)
    ctx = toy_context(ProbabilityLinear(weight), torch.rand(200, 4, generator=gen) - 0.5,
                      torch.rand(20, 4, generator=gen) - 0.5, 2)
    record = Maple(**MAPLE).explain(ctx)
    intercepts = torch.tensor(record.meta["surrogate"]["intercept"], dtype=torch.float64)
    assert len(intercepts) == len(record.indices) and set(record.targets.tolist()) == {0, 1}
    # p_1 = 0.5 + w·x and p_0 = 0.5 − w·x: the intercept is 0.5 for either class
    torch.testing.assert_close(intercepts, torch.full_like(intercepts, 0.5), rtol=0, atol=1e-5)


def test_maple_fitted_once_per_model_is_reused_by_re_explanations(monkeypatch):
    """The re-running metrics (fragility, continuity, the invariances) reuse the cell's fit: one forest for
    the model, however often they re-explain with it; another model gets a fresh copy fitted for it."""
    from nnxai.methods.attribution.perturbation import maple as maple_module
    from nnxai.metrics.rerun import attribute_as_explained

    fitted = []
    original = maple_module.Forest.__init__

    def counting(self, model, *args, **kwargs):
        fitted.append(model)
        original(self, model, *args, **kwargs)

    monkeypatch.setattr(maple_module.Forest, "__init__", counting)
    gen = torch.Generator().manual_seed(3)
    model, other = ProbabilityLinear(torch.tensor([0.1, -0.05, 0.0, 0.15])), ProbabilityLinear(torch.zeros(4))
    ctx = toy_context(model, torch.rand(200, 4, generator=gen) - 0.5, torch.rand(6, 4, generator=gen) - 0.5, 2)
    method = Maple(**MAPLE)
    first = method.explain(ctx)
    forest = method.forest_
    ones = torch.ones(3, dtype=torch.long)
    again = [attribute_as_explained(method, ctx, model, ctx.test.x[:3], ones) for _ in range(3)]
    assert fitted == [model] and method.forest_ is forest
    positive = first.targets[:3] == 1
    for out in again:
        torch.testing.assert_close(out[positive], torch.as_tensor(first.attributions[:3])[positive])
    on_other = attribute_as_explained(method, ctx, other, ctx.test.x[:3], ones)      # a fresh copy for it
    assert fitted == [model, other] and method.is_fitted_for(model) and method.forest_ is forest
    torch.testing.assert_close(on_other, torch.zeros_like(on_other), rtol=0, atol=1e-6)
    # the same forest, refitted from scratch, for the same model, seed and split
    record = Maple(**MAPLE).explain(ctx)
    np.testing.assert_array_equal(record.attributions, first.attributions)


@pytest.mark.parametrize("method_cls, params", [(PredictionDifference, PDA), (Maple, MAPLE), (Lime, LIME),
                                                (MeaningfulPerturbation, {**MP, "fill": "mean"})],
                         ids=["prediction_difference", "maple", "lime", "meaningful_perturbation"])
def test_a_method_that_learns_refuses_an_unfitted_call_and_explain_fits_it(method_cls, params):
    model = ProbabilityLinear(torch.tensor([0.1, -0.05, 0.0, 0.15]))
    gen = torch.Generator().manual_seed(4)
    x_train, x_test = torch.rand(100, 4, generator=gen) - 0.5, torch.rand(6, 4, generator=gen) - 0.5
    with pytest.raises(RuntimeError, match=f"method '{method_cls.spec.id}' learns from the train split: call fit"):
        method_cls(**params)(model, x_test[:1], torch.tensor([1]))
    ctx = toy_context(model, x_train, x_test, 2, seed=3)
    record = method_cls(**params).explain(ctx)
    fitted = method_cls(**params).fit(model, split(x_train), seed=ctx.seed)
    assert fitted.seed == 3
    expected = fitted(model, x_test[record.indices], torch.as_tensor(record.targets))
    torch.testing.assert_close(torch.as_tensor(record.attributions), expected.float(), rtol=1e-5, atol=1e-6)


def test_maple_rejects_bad_settings():
    with pytest.raises(ParamError, match="'maple'.max_features: 1.5 is out of range, expected > 0 and <= 1"):
        Maple(**{**MAPLE, "max_features": 1.5})
    with pytest.raises(ParamError, match="'maple'.n_trees: 0 is out of range, expected >= 1"):
        Maple(**{**MAPLE, "n_trees": 0})
