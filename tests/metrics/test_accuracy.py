"""``accuracy`` (METHODS.md: test accuracy of every model variant, the price of active intervention): a
registered metric of kind ``model`` with a declared direction, exact on a planted split (an oracle network whose
labels are flipped on ``k`` of ``n`` test inputs scores ``1 - k/n``), never planned on an explanation, and
written by the evaluate stage to ``model.json`` in the shape all.csv's ``model,accuracy`` rows come from."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from nnxai import registry
from nnxai.data import DATASETS, PreparedSplit
from nnxai.intervals import FILE_KEY, PerInput, summarise, to_file
from nnxai.methods.base import ExplainContext
from nnxai.metrics.accuracy import MODEL_KIND, ModelAccuracy, model_metric_ids
from nnxai.metrics.base import applicable_metrics, metrics
from nnxai.paths import MODEL_ROW, metrics_path
from nnxai.stages import evaluate as evaluate_stage
from nnxai.training.trainer import accuracy

N_TEST, N_FLIPPED = 200, 30


def sign_oracle() -> nn.Module:
    """A linear network with planted weights: logits (0, x0), so class 1 iff x0 > 0."""
    net = nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.zero_()
        net.weight[1, 0] = 1.0
    return net


def planted_context() -> ExplainContext:
    """Test labels are the oracle's rule, flipped on the first ``N_FLIPPED`` inputs: accuracy 1 - 30/200."""
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(N_TEST, 3)).astype(np.float32))
    y = (x[:, 0] > 0).long()
    y[:N_FLIPPED] = 1 - y[:N_FLIPPED]
    split = PreparedSplit(x=x, y=y, meta={})
    return ExplainContext(model=sign_oracle(), dataset="toy", model_id="oracle", info=DATASETS["causal"],
                          train=split, test=split, seed=0)


def test_accuracy_is_a_registered_metric_of_the_model_with_a_direction():
    assert metrics()["accuracy"] is ModelAccuracy
    assert ModelAccuracy.higher_is_better is True and ModelAccuracy.kinds == frozenset({MODEL_KIND})
    assert MODEL_KIND == MODEL_ROW and ModelAccuracy.description
    assert model_metric_ids(metrics()) == ["accuracy"]


def test_accuracy_on_a_planted_split_is_known_exactly():
    scores = ModelAccuracy()(None, planted_context())
    assert set(scores) == {"accuracy"} and isinstance(scores["accuracy"], PerInput)
    assert float(scores["accuracy"]) == pytest.approx(1 - N_FLIPPED / N_TEST)
    correct = scores["accuracy"].values
    assert correct.shape == (N_TEST,) and set(np.unique(correct)) == {0.0, 1.0}
    assert not correct[:N_FLIPPED].any() and correct[N_FLIPPED:].all()     # wrong exactly where flipped


def test_accuracy_is_never_planned_on_an_explanation():
    """The catalogue's judged_by lists 'accuracy' for rule extractors and active methods: the explanation's
    own accuracy there is fidelity.label_accuracy; the bare id is the model's, scored once per model."""
    judged = [m for m in registry.implemented_ids() if "accuracy" in registry.get(m).spec.judged_by]
    assert judged
    for method_id in judged:
        for dataset in DATASETS.values():
            assert "accuracy" not in applicable_metrics(registry.get(method_id), dataset), (method_id, dataset.name)


def test_evaluate_stage_writes_model_json_as_before(tmp_path, monkeypatch):
    """model.json holds ``accuracy`` and its interval over the test inputs (``[low, high, n]``), the shape
    aggregate turns into all.csv's ``model,accuracy`` row, equal to what the stage wrote before accuracy was
    a metric class (the trainer's per-input correctness, summarised)."""
    ctx = dataclasses.replace(planted_context(), train=SimpleNamespace(size=N_TEST))    # only its size is read
    monkeypatch.setattr(evaluate_stage, "load_context", lambda *args, **kwargs: ctx)
    settings = {"methods": {}, "metric_params": {}, "inputs": {}, "model_metrics": True, "seed": 0,
                "device": "cpu", "threads": 1}
    written = evaluate_stage.evaluate("causal", "baseline", settings, tmp_path, progress=False)
    assert written == [tmp_path / metrics_path("causal", "baseline", MODEL_ROW)]
    stored = json.loads(written[0].read_text())
    assert set(stored) == {"accuracy", FILE_KEY} and set(stored[FILE_KEY]) == {"accuracy"}
    assert stored["accuracy"] == pytest.approx(1 - N_FLIPPED / N_TEST)
    low, high, n = stored[FILE_KEY]["accuracy"]
    assert n == N_TEST and low < stored["accuracy"] < high
    values, intervals = summarise({"accuracy": PerInput(accuracy(ctx.model, ctx.test.x, ctx.test.y,
                                                                 per_input=True))}, 0)
    assert stored == json.loads(json.dumps({**values, FILE_KEY: to_file(intervals)}))


def test_evaluate_stage_refuses_accuracy_as_an_explanation_metric(tmp_path):
    settings = {"methods": {"gradient": ["accuracy"]}, "metric_params": {"accuracy": {}}, "inputs": {},
                "model_metrics": False, "seed": 0, "device": "cpu", "threads": 1}
    with pytest.raises(ValueError, match=r"\['accuracy'\] score the model"):
        evaluate_stage.evaluate("causal", "baseline", settings, tmp_path, progress=False)
