"""ROAR, RemOve And Retrain [150]: the degradation, and a planted ground truth for the retrained accuracy."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nnxai import registry
from nnxai.data import DatasetInfo, PreparedSplit
from nnxai.explanations import AttributionMap
from nnxai.methods.base import AttributionMethod, ExplainContext
from nnxai.metrics.roar import Roar, remove_top
from nnxai.params import ParamError
from nnxai.workflow import metrics_for

from toy_models import tiny_convnet

SIDE = 8
REGION = torch.zeros(SIDE, SIDE)
REGION[:4, :4] = 1.0                       # 16 of 64 pixels: the only place the label shows


class PlantedRegion(AttributionMethod):
    """A perfect explanation of the planted data set: the label region, for every input."""

    spec = registry.spec("gradient")

    def attribute(self, model, inputs, target, baselines=None):
        return REGION.expand_as(inputs).clone()


def planted(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform noise images whose top-left 4×4 square is 0 (class 0) or 1 (class 1)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    x = torch.rand(n, 1, SIDE, SIDE, generator=gen)
    x[:, :, :4, :4] = y.float()[:, None, None, None]
    return x, y


def planted_context(n_train: int = 256, n_test: int = 200) -> ExplainContext:
    model = tiny_convnet(0, in_channels=1, n_classes=2)
    model.checkpoint = {
        "model": "baseline", "architecture": "cnn",
        "arch_kwargs": {"in_channels": 1, "n_classes": 2, "widths": [4, 6, 8], "activation": "relu"},
        "config": {"training": {"epochs": 50, "batch_size": 32, "lr": 0.01, "weight_decay": 0.0},
                   "penalty": "none", "penalty_weight": 0.0, "seed": 0, "shuffle_labels": False}}
    info = DatasetInfo("planted", "image", 2, (1, SIDE, SIDE), False, False, "test toy")
    (x_train, y_train), (x_test, y_test) = planted(n_train, 0), planted(n_test, 1)
    return ExplainContext(model=model, dataset="planted", model_id="baseline", info=info,
                          train=PreparedSplit(x=x_train, y=y_train), test=PreparedSplit(x=x_test, y=y_test), seed=0)


def params(**changes):
    return {"fractions": [0.25], "n_train": 256, "epochs": 5, "methods": ["gradient"], "models": ["baseline"],
            "datasets": ["shapes"], **changes}


@pytest.mark.parametrize("shape", [(6, 3, 10, 10), (6, 7)])
@pytest.mark.parametrize("fraction", [0.1, 0.37, 0.5, 0.9])
def test_remove_top_replaces_exactly_the_top_k_percent_with_the_fill(shape, fraction):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=gen) + 2.0                 # never equal to the fill
    positions = int(np.prod(shape[2:])) if len(shape) == 4 else shape[1]
    relevance = torch.rand(shape[0], positions, generator=gen, dtype=torch.float64)
    fill = -torch.arange(1.0, shape[1] + 1)                    # one value per channel / feature
    out = remove_top(x, relevance, fraction, fill)
    flat_in = x.flatten(2) if len(shape) == 4 else x[:, None]
    flat_out = out.flatten(2) if len(shape) == 4 else out[:, None]
    fill_view = fill.reshape(1, -1, 1) if len(shape) == 4 else fill.reshape(1, 1, -1)
    replaced = (flat_out == fill_view).all(dim=1)              # (N, positions): every channel filled
    unchanged = (flat_out == flat_in).all(dim=1)
    assert (replaced ^ unchanged).all()
    k = math.floor(fraction * positions + 0.5)
    assert (replaced.sum(dim=1) == k).all()
    for r, gone in zip(relevance, replaced):
        assert r[gone].min() > r[~gone].max()


def test_remove_top_rejects_a_ranking_of_the_wrong_size():
    with pytest.raises(ValueError, match="does not rank"):
        remove_top(torch.zeros(2, 1, 4, 4), torch.zeros(2, 15), 0.5, torch.zeros(1))


def test_removing_the_planted_region_drops_retrained_accuracy_to_chance_and_random_removal_does_not(one_thread):
    ctx = planted_context()
    method = PlantedRegion(n_explain=200, batch_size=64)
    record = AttributionMap(REGION.expand(200, 1, SIDE, SIDE).numpy(), np.arange(200), np.zeros(200))
    metric = Roar(**params())
    result = metric(record, ctx, method)
    assert abs(result["roar"] - 0.5) < 0.08                    # no label information left: chance
    assert result["roar.k25"] == result["roar"]
    assert result["roar.random"] > 0.95                        # 12 of 16 region pixels survive on average
    assert result["roar.random.k25"] == result["roar.random"]


def test_the_random_order_curve_is_shared_across_jobs_through_the_run_cache(one_thread, tmp_path, monkeypatch):
    """One evaluate job per explanation: a second job (a fresh metric) on the same model and inputs reads the
    random-order curve from the run's cache instead of retraining it, and reports the same values."""
    import dataclasses

    import nnxai.metrics.roar as roar

    calls = []
    real = roar.roar_curve
    monkeypatch.setattr(roar, "roar_curve", lambda *a, **k: calls.append(1) or real(*a, **k))
    ctx = dataclasses.replace(planted_context(n_train=64, n_test=40), cache_dir=tmp_path)
    method = PlantedRegion(n_explain=40, batch_size=64)
    record = AttributionMap(REGION.expand(40, 1, SIDE, SIDE).numpy(), np.arange(40), np.zeros(40))
    first = Roar(**params(n_train=64, epochs=2))(record, ctx, method)
    assert len(calls) == 2 and len(list((tmp_path / "roar").glob("*.json"))) == 1
    second = Roar(**params(n_train=64, epochs=2))(record, ctx, method)
    assert len(calls) == 3                                     # the method's own curve only
    assert second["roar.random"] == first["roar.random"] and second["roar"] == first["roar"]
    Roar(**params(n_train=64, epochs=3))(record, ctx, method)  # other retraining: another entry
    assert len(calls) == 5 and len(list((tmp_path / "roar").glob("*.json"))) == 2


def test_cell_restriction_follows_the_config():
    cfg = {"methods": ["gradient", "integrated_gradients"], "models": {"image": ["baseline", "l1"]},
           "metric_params": {"roar": params(methods=["gradient"], models=["baseline"])}}
    plan = SimpleNamespace(cfg=cfg)
    assert Roar.cell_why_not(plan, "shapes", "baseline", "gradient") is None
    assert "roar" in metrics_for(cfg, "shapes", "baseline", "gradient")
    assert "roar" not in metrics_for(cfg, "shapes", "baseline", "integrated_gradients")
    assert "metric_params.roar.methods" in Roar.cell_why_not(plan, "shapes", "baseline", "integrated_gradients")
    assert "metric_params.roar.models" in Roar.cell_why_not(plan, "shapes", "l1", "gradient")
    assert "metric_params.roar.datasets" in Roar.cell_why_not(plan, "digits", "baseline", "gradient")
    assert "roar" not in metrics_for(cfg, "digits", "baseline", "gradient")


@pytest.mark.parametrize("bad, key, detail", [
    ({"fractions": [0.5, 1.0]}, r"fractions\[1\]", "out of range"), ({"fractions": []}, "fractions", "0 items"),
    ({"fractions": [0.3, 0.3]}, "fractions", "distinct"),
    ({"fractions": [0.1, 0.1000000001]}, "fractions", "distinct percent labels"),
    ({"n_train": 0}, "n_train", "out of range"), ({"epochs": 1.5}, "epochs", "integer"),
    ({"epochs": 0}, "epochs", "out of range"), ({"methods": "gradient"}, "methods", "expected a list"),
    ({"methods": ["no_such_method"]}, r"methods\[0\]", "'no_such_method' is not one of"),
    ({"methods": ["tcav"]}, r"methods\[0\]", "'tcav' is not one of"),
    ({"models": ["baseline_shuffled_labels"]}, r"models\[0\]", "shuffled labels"),
    ({"models": ["baseline", "no_such_model"]}, r"models\[1\]", "unknown model variant 'no_such_model'"),
])
def test_bad_parameters_are_rejected_by_name(bad, key, detail):
    with pytest.raises(ParamError, match=rf"metric 'roar'\.{key}: .*{detail}"):
        Roar(**params(**bad))


def test_epochs_may_be_null_for_the_checkpoint_s_own():
    assert Roar(**params(epochs=None)).params["epochs"] is None
    assert Roar(**params(methods=[], models=["baseline_seed2"])).params["models"] == ["baseline_seed2"]


def test_a_model_without_its_checkpoint_record_is_rejected_before_any_work():
    ctx = planted_context(n_train=8, n_test=4)
    del ctx.model.checkpoint
    record = AttributionMap(np.zeros((4, 1, SIDE, SIDE)), np.arange(4), np.zeros(4))
    with pytest.raises(ValueError, match="model.checkpoint"):
        Roar(**params())(record, ctx, PlantedRegion(n_explain=4, batch_size=4))
