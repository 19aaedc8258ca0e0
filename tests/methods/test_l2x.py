"""L2X [110]: the Gumbel-softmax subset relaxation (Eqs. 5–6) and recovery of planted features / patches.

The planted tasks use inputs centred on 0, the value L2X's ``V ⊙ x`` gives an unselected unit: with inputs in
[0, 1] "unselected" would look like "low", and an instance-wise selector may then leave the planted unit out
exactly when its value is low, the selection itself telling the approximator the class (a property of the
method, not what these tests are about).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.data import PreparedSplit
from nnxai.methods.attribution.perturbation._l2x_training import gumbel_subset, units_to_input
from nnxai.methods.attribution.perturbation.l2x import L2X
from nnxai.metrics.post_hoc_accuracy import PostHocAccuracy
from nnxai.params import ParamError
from toy_models import LinearModel, toy_context

PLANTED = [2, 7]


pytestmark = pytest.mark.usefixtures("one_thread")


def l2x(**overrides) -> L2X:
    params = dict(n_explain=200, batch_size=64, epochs=5, lr=0.01, k_features=2, k_patches=1, patch_size=4,
                  tau=0.2, hidden=16, train_batch_size=40)
    return L2X(**{**params, **overrides})


def planted_table():
    weight = torch.zeros(2, 10)
    weight[1, PLANTED] = torch.tensor([3.0, -3.0])
    model = LinearModel(weight)                      # class 1 iff 3 x_2 − 3 x_7 > 0: only x_2, x_7 matter
    gen = torch.Generator().manual_seed(0)
    return model, toy_context(model, torch.randn(400, 10, generator=gen), torch.randn(200, 10, generator=gen), 2)


class QuadrantModel(nn.Module):
    """Class 1 iff the pixels of the bottom-left 4×4 patch of an 8×8 image sum to more than 0."""

    architecture = "cnn"

    def __init__(self):
        super().__init__()
        region = torch.zeros(1, 8, 8)
        region[:, 4:, :4] = 1.0
        self.register_buffer("region", region)

    def forward(self, x):
        evidence = 4.0 * (x * self.region).flatten(1).sum(1)
        return torch.stack([torch.zeros_like(evidence), evidence], dim=1)


def test_gumbel_subset_follows_eqs_5_and_6():
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 3.0]])
    k, tau = 3, 0.7
    got = gumbel_subset(logits, k, tau, torch.Generator().manual_seed(4))
    u = torch.rand((2, k, 4), generator=torch.Generator().manual_seed(4))
    expected = torch.zeros(2, 4)
    for b in range(2):
        for draw in range(k):
            g = -torch.log(-torch.log(u[b, draw]))
            c = torch.exp((logits[b] + g) / tau) / torch.exp((logits[b] + g) / tau).sum()      # Eq. 5
            expected[b] = torch.maximum(expected[b], c)                                      # Eq. 6
    torch.testing.assert_close(got, expected)


def test_units_broadcast_to_patches_of_every_channel():
    values = torch.arange(4.0)[None]
    pixels = units_to_input(values, (2, 4, 4), 2)
    assert pixels.shape == (1, 2, 4, 4)
    torch.testing.assert_close(pixels[0, 1], torch.tensor([[0.0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]))


def test_selects_the_planted_features_of_a_table():
    model, ctx = planted_table()
    method = l2x()
    record = method.explain(ctx)
    top = np.sort(np.argsort(-record.attributions, axis=1)[:, :2], axis=1)
    assert (top == PLANTED).all()
    scores = PostHocAccuracy()(record, ctx, method)
    assert scores["post_hoc_accuracy"] == 1.0 and scores["post_hoc_accuracy.random"] < 0.75
    assert record.meta["selection"] == {"k": 2, "unit": "feature", "patch_size": 1}
    losses = record.meta["training"]["loss_per_epoch"]
    assert len(losses) == 5 and losses[-1] < losses[0]
    # the trained explainer is reused for the model: same scores, whatever the target
    again = method(model, ctx.test.x[record.indices[:5]], torch.zeros(5, dtype=torch.long))
    np.testing.assert_array_equal(again.numpy(), record.attributions[:5])


def test_selects_the_planted_patch_of_an_image():
    model = QuadrantModel()
    gen = torch.Generator().manual_seed(0)

    def images(n):                                    # each 4×4 patch one level in [-1, 1]
        return (2 * torch.rand(n, 1, 2, 2, generator=gen) - 1).repeat_interleave(4, 2).repeat_interleave(4, 3)

    ctx = toy_context(model, images(400), images(100), 2)
    method = l2x(train_batch_size=20, hidden=8, lr=0.02, tau=0.5)
    record = method.explain(ctx)
    patch_scores = record.attributions[:, 0, ::4, ::4].reshape(len(record.indices), 4)
    assert (patch_scores.argmax(1) == 2).mean() >= 0.95                 # patch 2: rows 4-7, columns 0-3
    assert record.meta["selection"] == {"k": 1, "unit": "patch", "patch_size": 4}
    assert (record.attributions == np.repeat(np.repeat(patch_scores.reshape(-1, 1, 2, 2), 4, 2), 4, 3)).all()
    assert PostHocAccuracy()(record, ctx, method)["post_hoc_accuracy"] >= 0.95


def test_same_seed_same_explainer_and_a_new_model_needs_its_own_fit():
    model, ctx = planted_table()
    ctx.train.x = ctx.train.x[:200]
    first, second = l2x(epochs=2).explain(ctx), l2x(epochs=2).explain(ctx)
    np.testing.assert_array_equal(first.attributions, second.attributions)
    method = l2x(epochs=2).fit(model, ctx.train, seed=ctx.seed)
    x = ctx.test.x[first.indices]
    np.testing.assert_array_equal(method(model, x, torch.zeros(len(x), dtype=torch.long)).numpy(),
                                  first.attributions)
    other = LinearModel(torch.randn(2, 10, generator=torch.Generator().manual_seed(9)))
    with pytest.raises(RuntimeError, match="call fit"):
        method(other, x, torch.zeros(len(x), dtype=torch.long))
    refitted = l2x(epochs=2).fit(other, ctx.train, seed=ctx.seed)(other, x, torch.zeros(len(x), dtype=torch.long))
    assert not torch.equal(refitted, torch.as_tensor(first.attributions))


def test_an_unfitted_l2x_refuses_to_explain():
    model, ctx = planted_table()
    with pytest.raises(RuntimeError, match="method 'l2x' learns from the train split: call fit"):
        l2x()(model, ctx.test.x[:2], torch.zeros(2, dtype=torch.long))


def test_bad_parameters_are_clear_errors():
    with pytest.raises(ParamError, match="'l2x'.tau: 0.0 is out of range, expected > 0"):
        l2x(tau=0.0)
    with pytest.raises(ParamError, match="'l2x'.k_patches: 0 is out of range, expected >= 1"):
        l2x(k_patches=0)

    def split(x):
        return PreparedSplit(x=x, y=torch.zeros(len(x), dtype=torch.long))

    with pytest.raises(ValueError, match="'k_features'=2 exceeds the 1 features"):
        l2x().fit(LinearModel(torch.zeros(2, 1)), split(torch.zeros(4, 1)))
    with pytest.raises(ValueError, match="multiples of patch_size=4"):
        l2x().fit(LinearModel(torch.zeros(2, 36)), split(torch.zeros(4, 1, 6, 6)))
