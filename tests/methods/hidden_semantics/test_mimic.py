"""The shallow mimic of Ba & Caruana (2nd survey [50]): the L2-on-logits loss on known values, the mimic of a
network that is itself shallow recovers its logits (fidelity ~1), the record rebuilds the mimic, and the
``fidelity`` metric's surrogate branch on known values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.data import DATASETS, PreparedSplit
from nnxai.explanations import SurrogateModel, load_explanation
from nnxai.methods.base import ExplainContext
from nnxai.methods.hidden_semantics.mimic import Mimic, mimic_loss, rebuild
from nnxai.metrics.base import metrics
from nnxai.metrics.rules import Fidelity
from nnxai.models.networks import build_network

# A teacher with one hidden layer of 16 ReLUs; the mimic has 32 and no bottleneck, so it can be the teacher.
PARAMS = {"hidden": 32, "bottleneck": 0, "n_train": 2000, "n_augment": 0, "noise": 0.0, "epochs": 60,
          "batch_size": 100, "lr": 0.01}


def test_l2_loss_on_logits_known_values():
    predicted = torch.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    logits = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    loss = mimic_loss(predicted, logits)          # (1 + 4 + 1) / (2 * 2)
    assert float(loss.detach()) == 1.5
    loss.backward()                               # d/dg = (g - z) / T
    torch.testing.assert_close(predicted.grad, torch.tensor([[0.5, 1.0], [0.0, -0.5]]))


def _shallow_teacher():
    torch.manual_seed(0)
    net = build_network("mlp", n_features=36, n_classes=3, hidden=[16], activation="relu")
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)                           # logits of a few units, so that classes are decided
    return net.eval()


def _ctx(model, seed=0):
    rng = np.random.default_rng(seed)
    train = PreparedSplit(x=torch.from_numpy(rng.standard_normal((2000, 1, 6, 6)).astype(np.float32)),
                          y=torch.zeros(2000, dtype=torch.int64))
    x_test = torch.from_numpy(rng.standard_normal((500, 1, 6, 6)).astype(np.float32))
    with torch.no_grad():
        y_test = model(x_test).argmax(1)
    test = PreparedSplit(x=x_test, y=y_test)
    return ExplainContext(model=model, dataset="toy", model_id="shallow", info=DATASETS["digits"], train=train,
                          test=test, seed=seed)


@pytest.fixture(scope="module")
def fitted():
    teacher = _shallow_teacher()
    ctx = _ctx(teacher)
    method = Mimic(**PARAMS).fit(teacher, ctx.train, seed=ctx.seed)
    return teacher, ctx, method, method.label_units(teacher, ctx)


def test_mimic_of_a_shallow_network_recovers_its_logits(fitted):
    teacher, ctx, _, record = fitted
    with torch.no_grad():
        z = teacher(ctx.test.x).numpy()
    r2 = 1 - ((record.logits - z) ** 2).sum() / ((z - z.mean(0)) ** 2).sum()
    assert r2 > 0.98
    out = Fidelity(n_queries=0)(record, ctx)
    assert out["fidelity"] >= 0.95 and out["fidelity.label_accuracy"] == out["fidelity"]  # labels = teacher's
    assert out["fidelity.logit_mse"] == pytest.approx(((record.logits - z) ** 2).mean(), rel=1e-5)
    assert record.meta["train_loss"][-1] < record.meta["train_loss"][0] / 20


def test_record_rebuilds_the_mimic(fitted, tmp_path):
    _, ctx, _, record = fitted
    assert record.architecture["hidden"] == 32 and record.architecture["bottleneck"] == 0
    assert record.architecture["n_fit_inputs"] == 2000 and record.indices.tolist() == list(range(500))
    again = load_explanation(record.save(tmp_path / "mimic.npz"))
    assert isinstance(again, SurrogateModel)
    with torch.no_grad():
        np.testing.assert_allclose(rebuild(again)(ctx.test.x).numpy(), record.logits, rtol=1e-5, atol=1e-5)


def test_bottleneck_and_perturbed_copies():
    teacher = _shallow_teacher()
    ctx = _ctx(teacher, seed=1)
    params = {**PARAMS, "bottleneck": 8, "n_train": 300, "n_augment": 2, "noise": 0.5, "epochs": 2}
    method = Mimic(**params).fit(teacher, ctx.train, seed=1)
    record = method.label_units(teacher, ctx)
    assert record.parameters["bottleneck.weight"].shape == (8, 36)
    assert record.parameters["hidden.weight"].shape == (32, 8)
    assert record.architecture["n_fit_inputs"] == 900 and record.architecture["n_train"] == 300
    # the train labels are never read: garbage labels give the same mimic
    ctx.train.y = torch.randint(0, 3, (2000,), generator=torch.Generator().manual_seed(0))
    again = Mimic(**params).fit(teacher, ctx.train, seed=1).label_units(teacher, ctx)
    np.testing.assert_array_equal(again.logits, record.logits)


def test_explaining_before_fitting_is_refused(fitted):
    teacher, ctx, _, _ = fitted
    with pytest.raises(RuntimeError, match="call fit"):
        Mimic(**PARAMS).label_units(teacher, ctx)


class _Fixed(nn.Module):
    """A 'network' whose logits are the first two pixels of its input."""

    def forward(self, x):
        return x.flatten(1)[:, :2]


def test_fidelity_of_a_surrogate_on_known_values():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0], [5.0, 0.0]]).reshape(5, 1, 1, 2)
    y = torch.tensor([0, 0, 0, 1, 1])                         # the network calls them 0, 1, 0, 1, 0
    split = PreparedSplit(x=x, y=y)
    ctx = ExplainContext(model=_Fixed(), dataset="toy", model_id="fixed", info=DATASETS["digits"], train=split,
                         test=split)
    logits = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])  # at test inputs 0..3: 0, 1, 1, 1
    record = SurrogateModel(architecture={}, indices=np.arange(4), logits=logits, parameters={})
    out = Fidelity(n_queries=0)(record, ctx)
    assert out["fidelity"] == 0.75 and out["fidelity.label_accuracy"] == 0.5
    # squared differences per input, mean over the 2 classes: 0, 0, (4 + 0) / 2, (0 + 4) / 2
    assert out["fidelity.logit_mse"] == 1.0 and list(out["fidelity"].values) == [1, 1, 0, 1]


def test_fidelity_applies_to_mimic_only_among_hidden_semantics():
    from nnxai import registry

    info = DATASETS["shapes"]
    fidelity = metrics()["fidelity"]
    assert "hidden_semantics" in fidelity.kinds
    assert fidelity.applies(registry.get("mimic"), info)
    assert not fidelity.applies(registry.get("network_dissection"), info)
