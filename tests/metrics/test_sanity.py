"""Sanity checks of Adebayo et al. [75]: map similarity scores, cascading randomisation, data randomisation."""

from __future__ import annotations

import copy
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from nnxai import registry
from nnxai.explanations import AttributionMap
from nnxai.methods.attribution.gradient.saliency import Gradient
from nnxai.methods.base import AttributionMethod
from nnxai.metrics.map_similarity import normalise_grayscale, spearman_rows, ssim_rows
from nnxai.config import models_for
from nnxai.metrics.rerun import attribute_as_explained, check_rerunnable, fitted_method
from nnxai.metrics.sanity import (SHUFFLED_MODEL, SanityDataRandomisation, SanityModelRandomisation,
                                  cascading_randomisation)
from nnxai.params import ParamError
from nnxai.workflow import methods_for, metrics_for

from test_attribution_properties import CASES, build, toy_case
from toy_models import LinearModel, tiny_convnet, toy_context


class InputItself(AttributionMethod):
    """The "edge detector" of [75]: a map computed from the input alone, whatever the weights."""

    spec = registry.spec("gradient")

    def attribute(self, model, inputs, target, baselines=None):
        return inputs.detach().clone()


def record_of(method, ctx) -> AttributionMap:
    return method.explain(ctx)


def image_case(n: int = 10, side: int = 12, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    model = tiny_convnet(seed, in_channels=3, n_classes=3)
    x = torch.rand(n, 3, side, side, generator=gen)
    return model, toy_context(model, x, x, n_classes=3, seed=seed)


# --- similarity scores ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(7, 7), (12, 15), (32, 32)])
def test_torch_ssim_matches_skimage(shape):
    gen = torch.Generator().manual_seed(sum(shape))
    a = torch.rand(4, *shape, generator=gen, dtype=torch.float64)
    b = (0.6 * a + 0.4 * torch.rand(4, *shape, generator=gen, dtype=torch.float64)) ** 2
    expected = [structural_similarity(a[i].numpy(), b[i].numpy(), data_range=1.0) for i in range(4)]
    assert np.allclose(ssim_rows(a, b).numpy(), expected, atol=1e-5, rtol=0)
    assert torch.allclose(ssim_rows(a, a), torch.ones(4, dtype=torch.float64), atol=1e-12)


def test_spearman_matches_scipy_with_ties_and_is_nan_for_a_constant_map():
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (5, 40), generator=gen).double()           # many ties
    b = a + torch.randint(0, 3, (5, 40), generator=gen).double()
    expected = [spearmanr(a[i].numpy(), b[i].numpy()).statistic for i in range(5)]
    assert np.allclose(spearman_rows(a, b).numpy(), expected, atol=1e-12)
    assert torch.isnan(spearman_rows(torch.ones(1, 9), torch.rand(1, 9, generator=gen))).all()


def test_grayscale_normalisation_is_the_pair_visualisation():
    gen = torch.Generator().manual_seed(1)
    maps = torch.rand(3, 9, 11, generator=gen, dtype=torch.float64) ** 3
    m = maps.numpy()
    expected = [np.clip((x - x.min()) / (np.percentile(x, 99) - x.min()), 0, 1) for x in m]
    assert np.allclose(normalise_grayscale(maps).numpy(), expected, atol=1e-12)
    assert (normalise_grayscale(torch.full((1, 8, 8), 3.0)) == 0).all()


# --- re-running a method on other weights --------------------------------------------------------------

RERUNNABLE = [c for c in CASES if check_rerunnable(registry.get(c.values[0])) is None]


@pytest.mark.parametrize("method_id, kind", [c.values for c in RERUNNABLE], ids=[c.id for c in RERUNNABLE])
def test_rerun_on_the_same_model_reproduces_explain(method_id, kind):
    # the re-run reuses the fit of the explain stage (reference, seed, bounds)
    model, ctx = toy_case(kind)
    method = build(method_id)
    record = method.explain(ctx)
    inputs = ctx.test.x[torch.as_tensor(record.indices)]
    again = attribute_as_explained(method, ctx, model, inputs, torch.as_tensor(record.targets))
    assert np.allclose(again.numpy(), record.attributions, atol=1e-6, rtol=1e-5)


class LearnsMean(InputItself):
    """A method that learns: its map is the train mean of the model it was fitted for, everywhere."""

    def _fit(self, model, train):
        self.fits_ = getattr(self, "fits_", 0) + 1
        self.mean_ = float(train.x.mean())

    def attribute(self, model, inputs, target, baselines=None):
        return torch.full_like(inputs, self.mean_)


def test_the_cell_fit_is_reused_and_another_model_is_fitted_afresh_each_time():
    model, ctx = image_case()
    method = LearnsMean(n_explain=4, batch_size=4)
    with pytest.raises(RuntimeError, match="fit"):
        method(model, ctx.test.x[:2], torch.zeros(2))             # a method that learns: not before fit
    assert fitted_method(method, ctx) is method and method.is_fitted_for(model) and method.seed == ctx.seed
    targets = torch.zeros(3, dtype=torch.long)
    for _ in range(2):
        attribute_as_explained(method, ctx, model, ctx.test.x[:3], targets)
    assert method.fits_ == 1                                       # the cell's fit, reused
    other = copy.deepcopy(model)
    first, second = fitted_method(method, ctx, other), fitted_method(method, ctx, other)
    assert first is not method and second is not first             # a fresh copy, every time
    assert first.is_fitted_for(other) and first.fits_ == 1 and first.params == method.params
    assert torch.equal(attribute_as_explained(method, ctx, other, ctx.test.x[:3], targets),
                       torch.full_like(ctx.test.x[:3], float(ctx.train.x.mean())))
    assert method.is_fitted_for(model) and method.fits_ == 1       # the cell's fit is left alone


def test_every_attribution_method_is_rerunnable_and_nothing_else():
    _, ctx = image_case()
    assert SanityModelRandomisation.why_not(LearnsMean, ctx.info) is None
    assert "not an AttributionMethod" in check_rerunnable(registry.get("tcav"))
    assert "not an AttributionMethod" in SanityModelRandomisation.why_not(registry.get("tcav"), ctx.info)
    with pytest.raises(ValueError, match="2 targets for 3 inputs"):
        attribute_as_explained(Gradient(n_explain=2, batch_size=2), ctx, ctx.model, ctx.test.x[:3], torch.zeros(2))


def test_n_inputs_is_checked_by_its_declaration():
    with pytest.raises(ParamError, match=r"metric 'sanity_model_randomisation'\.n_inputs: 0 is out of range"):
        SanityModelRandomisation(n_inputs=0)
    with pytest.raises(ParamError, match=r"unknown \['n_input'\]"):
        SanityModelRandomisation(n_input=3)


def test_rerun_explains_the_classes_it_is_given():
    model, ctx = image_case()
    x = ctx.test.x[:4]
    target = torch.tensor([0, 1, 2, 1])
    expected = Gradient(n_explain=4, batch_size=3)(model, x, target)
    assert torch.equal(attribute_as_explained(Gradient(n_explain=1, batch_size=3), ctx, model, x, target), expected)


# --- cascading randomisation ---------------------------------------------------------------------------

def test_cascade_reinitialises_exactly_the_named_layers_from_the_top_and_leaves_the_model_alone():
    model, _ = image_case()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seed = 5
    order = ["classifier", "features.conv3", "features.conv2", "features.conv1"]
    seen = []
    for k, (name, randomised) in enumerate(cascading_randomisation(model, seed), start=1):
        seen.append(name)
        assert randomised is not model
        state = randomised.state_dict()
        for layer in order:
            fresh = dict(model.named_modules())[layer]
            expected = {p: before[f"{layer}.{p}"] for p in ("weight", "bias")}
            if layer in seen:                         # re-drawn by its default init, seeded with seed + step
                clone = type(fresh)(*((fresh.in_features, fresh.out_features) if layer == "classifier"
                                      else (fresh.in_channels, fresh.out_channels, fresh.kernel_size)))
                torch.manual_seed(seed + seen.index(layer) + 1)
                clone.reset_parameters()
                expected = {"weight": clone.weight.detach(), "bias": clone.bias.detach()}
                assert not torch.equal(expected["weight"], before[f"{layer}.weight"])
            for p, value in expected.items():
                assert torch.equal(state[f"{layer}.{p}"], value), (k, layer, p)
    assert seen == order
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_edge_detector_keeps_its_maps_and_fails_the_check():
    model, ctx = image_case()
    method = InputItself(n_explain=10, batch_size=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = SanityModelRandomisation(n_inputs=100)(record_of(method, ctx), ctx, method)
    assert result["sanity_model_randomisation"] == pytest.approx(1.0, abs=1e-12)
    assert result["sanity_model_randomisation.spearman_signed"] == pytest.approx(1.0, abs=1e-12)
    assert result["sanity_model_randomisation.ssim"] == pytest.approx(1.0, abs=1e-12)
    steps = [k for k in result if ".step" in k]
    assert len(steps) == 3 * 4 and all(result[k] == pytest.approx(1.0, abs=1e-12) for k in steps)
    assert "sanity_model_randomisation.spearman.step4_features_conv1" in result
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_gradient_of_a_linear_model_after_randomisation_worked_out():
    # |∂f_c/∂x| = |W_c| for every input of class c, so ρ = spearman(|W_c|, |W'_c|) with W' the re-drawn W
    gen = torch.Generator().manual_seed(2)
    weight = torch.randn(2, 40, generator=gen)
    model = LinearModel(weight)
    x = torch.randn(6, 40, generator=gen)
    ctx = toy_context(model, x, x, n_classes=2, seed=3)
    method = Gradient(n_explain=6, batch_size=4)
    record = record_of(method, ctx)
    (_, randomised), = list(cascading_randomisation(model, 3))
    new_weight = randomised.classifier.weight.detach()
    rho = [spearmanr(weight[c].abs(), new_weight[c].abs()).statistic for c in record.targets[:4]]
    result = SanityModelRandomisation(n_inputs=4)(record, ctx, method)      # the first 4 of 6 inputs
    assert result["sanity_model_randomisation"] == pytest.approx(np.mean(rho), abs=1e-9)
    assert result["sanity_model_randomisation.spearman.step1_classifier"] == result["sanity_model_randomisation"]
    assert abs(result["sanity_model_randomisation"]) < 0.3
    assert "sanity_model_randomisation.ssim" not in result          # tabular: no SSIM window


def test_gradient_of_a_convnet_changes_unlike_the_edge_detector():
    model, ctx = image_case(n=12, side=16)
    method = Gradient(n_explain=12, batch_size=12)
    result = SanityModelRandomisation(n_inputs=100)(record_of(method, ctx), ctx, method)
    assert result["sanity_model_randomisation"] < 0.5
    assert result["sanity_model_randomisation.ssim"] < 0.5


# --- data randomisation --------------------------------------------------------------------------------

def run_config(models):
    return {"methods": ["gradient"], "models": {"image": models, "tabular": ["baseline"]}, "metric_params": {}}


def run_plan(cfg):
    """What the workflow tells a metric about the run (nnxai.metrics.base.RunPlan)."""
    return SimpleNamespace(cfg=cfg, models_for=partial(models_for, cfg), methods_for=partial(methods_for, cfg))


def test_data_randomisation_applies_to_the_baseline_cell_of_a_run_with_the_shuffled_model():
    cfg = run_config(["baseline", SHUFFLED_MODEL])
    plan = run_plan(cfg)
    assert SanityDataRandomisation.cell_why_not(plan, "shapes", "baseline", "gradient") is None
    assert "sanity_data_randomisation" in metrics_for(cfg, "shapes", "baseline", "gradient")
    assert "not the baseline" in SanityDataRandomisation.cell_why_not(plan, "shapes", SHUFFLED_MODEL, "gradient")
    assert "does not train" in SanityDataRandomisation.cell_why_not(run_plan(run_config(["baseline"])), "shapes",
                                                                    "baseline", "gradient")
    assert "integrated_gradients is not run" in SanityDataRandomisation.cell_why_not(
        plan, "shapes", "baseline", "integrated_gradients")
    assert SanityDataRandomisation.required_inputs(cfg, "shapes", "baseline", "gradient") == [
        f"data/explanations/shapes/{SHUFFLED_MODEL}/gradient.npz", f"data/checkpoints/shapes/{SHUFFLED_MODEL}.pt"]


def test_data_randomisation_reads_the_shuffled_model_explanation(tmp_path):
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(10, 2, 9, 9, generator=gen)
    ctx = toy_context(tiny_convnet(0, in_channels=2), x, x, n_classes=3)
    ctx.workdir = tmp_path
    indices = np.array([1, 3, 4, 8])
    ours = AttributionMap(np.random.default_rng(0).normal(size=(4, 2, 9, 9)), indices, np.array([0, 1, 2, 2]))
    theirs = AttributionMap(np.random.default_rng(1).normal(size=(4, 2, 9, 9)), indices, np.array([0, 2, 2, 1]))
    path = SanityDataRandomisation.required_inputs(run_config([]), "toy", "baseline", "gradient")[0]
    theirs.save(tmp_path / path)
    result = SanityDataRandomisation()(ours, ctx, Gradient(n_explain=4, batch_size=4))

    a, b = np.abs(ours.attributions).sum(1), np.abs(theirs.attributions).sum(1)
    signed_a, signed_b = ours.attributions.sum(1), theirs.attributions.sum(1)

    def pair_normalise(m):
        return np.clip((m - m.min()) / (np.percentile(m, 99) - m.min()), 0, 1).astype(np.float64)

    assert result["sanity_data_randomisation"] == pytest.approx(
        np.mean([spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(4)]), abs=1e-9)
    assert result["sanity_data_randomisation.spearman_signed"] == pytest.approx(
        np.mean([spearmanr(signed_a[i].ravel(), signed_b[i].ravel()).statistic for i in range(4)]), abs=1e-9)
    assert result["sanity_data_randomisation.ssim"] == pytest.approx(np.mean(
        [structural_similarity(pair_normalise(a[i]), pair_normalise(b[i]), data_range=1.0) for i in range(4)]),
        abs=1e-5)
    assert result["sanity_data_randomisation.same_target"] == 0.5

    # a control that explains a subset of the baseline's inputs (config control_n_explain): compared on it
    AttributionMap(theirs.attributions[[1, 3]], indices[[1, 3]], theirs.targets[[1, 3]]).save(tmp_path / path)
    subset = SanityDataRandomisation()(ours, ctx, Gradient(n_explain=4, batch_size=4))
    assert subset["sanity_data_randomisation"] == pytest.approx(
        np.mean([spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in (1, 3)]), abs=1e-9)
    assert subset["sanity_data_randomisation.same_target"] == 0.0                 # targets 1, 2 against 2, 1
    AttributionMap(theirs.attributions, np.array([1, 3, 5, 8]), theirs.targets).save(tmp_path / path)
    with pytest.raises(ValueError, match="explains test inputs that the toy record does not"):
        SanityDataRandomisation()(ours, ctx, Gradient(n_explain=4, batch_size=4))
