"""TCAV [63] and ACE [115]: CAVs on a planted linear toy, the t-test against scipy and on null data, TCAV's
scores where the answer is known, ACE recovering two planted segment types, and stripes on a real shapes CNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.linear_model import LogisticRegression
from torch import nn

from nnxai.data import DATASETS, DatasetInfo, PreparedSplit, shapes
from nnxai.explanations import ConceptScores, load_explanation
from nnxai.ops import cav as _cav
from nnxai.ops.segments import decode_runs, encode_runs
from nnxai.methods.attribution.concept.ace import ACE
from nnxai.methods.attribution.concept.tcav import TCAV
from nnxai.methods.base import ExplainContext
from nnxai.params import ParamError
from nnxai.report.table2 import _excerpt

from toy_models import tiny_convnet, train_shapes_cnn

D = 8
DIRECTION = torch.tensor([1.0, -2.0, 0.5, 0.0, 1.5, 0.0, -1.0, 2.0]) / np.sqrt(12.5)
TCAV_PARAMS = {"layer": "features", "n_concept_examples": 50, "n_runs": 10, "n_random": 10, "alpha": 0.05,
               "cav_l2": 1.0, "n_inputs": 20, "batch_size": 16}


class PlantedLinear(nn.Module):
    """Layer ``features`` = the input flattened to 8 values ``a``; logits ``(-d·a, d·a)``."""

    architecture = "cnn"

    def __init__(self, direction: torch.Tensor):
        super().__init__()
        self.features = nn.Flatten()
        self.register_buffer("direction", direction)

    def forward(self, x):
        s = self.features(x) @ self.direction
        return torch.stack([-s, s], dim=1)

    def unit_layers(self):
        return {"features": self.features}


def _ctx(model, x_train, concepts, names, x_test, y_test, seed=0, info=None):
    meta = {"concept_features": names, "class_names": ["neg", "pos"]}
    info = info or DatasetInfo("toy", "image", 2, tuple(x_test.shape[1:]), False, True, "test toy")
    train = PreparedSplit(x=x_train, y=torch.zeros(len(x_train), dtype=torch.long), concepts=concepts, meta=meta)
    test = PreparedSplit(x=x_test, y=y_test, meta=meta)
    return ExplainContext(model=model, dataset="toy", model_id="toy", info=info, train=train, test=test, seed=seed)


@pytest.fixture(scope="module")
def planted():
    """400 training images, the first 100 hold the concept (noise + 3 d)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, D))
    x[:100] += 3.0 * DIRECTION.numpy()
    table = np.r_[np.ones(100), np.zeros(300)][:, None].astype(np.float32)
    x_test = torch.as_tensor(rng.normal(size=(40, 1, 2, 4)), dtype=torch.float32)
    y_test = torch.arange(40) % 2
    x_train = torch.as_tensor(x.reshape(400, 1, 2, 4), dtype=torch.float32)
    return _ctx(PlantedLinear(DIRECTION), x_train, table, ["planted"], x_test, y_test)


def _test(record, concept, k):
    return next(t for t in record.tests if t["concept"] == concept and t["class"] == k)


def test_cav_aligns_with_the_planted_direction():
    rng = np.random.default_rng(1)
    concept = rng.normal(size=(2000, D)) + 2.0 * DIRECTION.numpy()
    cav = _cav.concept_activation_vector(concept, rng.normal(size=(2000, D)), l2=1.0)
    assert np.linalg.norm(cav) == pytest.approx(1.0)
    assert cav @ DIRECTION.numpy() > 0.99


@pytest.mark.parametrize("n, dim, l2", [(30, 50, 1.0), (40, 5, 0.1), (25, 300, 10.0)])
def test_cav_is_scikit_learns_logistic_regression_normal(n, dim, l2):
    """The span-coordinates solution equals LogisticRegression(C = 1/l2) fitted on the raw activations."""
    rng = np.random.default_rng(n + dim)
    concept, random = np.abs(rng.normal(size=(n, dim))) + 0.3, np.abs(rng.normal(size=(n + 3, dim)))
    y = np.r_[np.ones(n), np.zeros(n + 3)]
    w = LogisticRegression(C=1.0 / l2, tol=1e-12, max_iter=100_000).fit(np.r_[concept, random], y).coef_[0]
    assert _cav.concept_activation_vector(concept, random, l2) @ (w / np.linalg.norm(w)) > 1 - 1e-7


def test_t_test_is_scipys_and_handles_constant_samples():
    rng = np.random.default_rng(2)
    for _ in range(5):
        a, b = rng.random(7), rng.random(12) * 0.8
        assert _cav.t_test(a, b) == pytest.approx(stats.ttest_ind(a, b).pvalue, rel=1e-10)
    assert _cav.t_test([1.0, 1.0, 1.0], [1.0, 1.0]) == 1.0
    assert _cav.t_test([1.0, 1.0, 1.0], [0.0, 0.0]) == 0.0


def test_t_test_is_calibrated_on_null_samples():
    """Scores of concept and random runs drawn from one distribution: about 5 % of tests reject at 0.05."""
    rng = np.random.default_rng(3)
    p = np.array([_cav.t_test(rng.random(10), rng.random(10)) for _ in range(400)])
    assert 0.02 <= np.mean(p < 0.05) <= 0.09


def test_tcav_is_one_for_the_class_the_concept_raises_and_zero_for_the_other(planted):
    record = TCAV(**TCAV_PARAMS).explain(planted)
    pos, neg = _test(record, "planted", 1), _test(record, "planted", 0)
    assert pos["run_scores"] == [1.0] * 10 and neg["run_scores"] == [0.0] * 10
    assert pos["significant"] and neg["significant"]
    # the gradient of logit 1 is d everywhere: a random CAV scores 1 or 0 as the sign of d·v falls
    assert set(record.random_scores[1]) <= {0.0, 1.0} and 0 < np.mean(record.random_scores[1]) < 1
    assert len(record.tests) == 2 and all(t["p_value_corrected"] == min(1.0, 2 * t["p_value"]) for t in record.tests)


def test_random_versus_random_runs_are_rarely_significant(planted):
    """Two independent samples of random-vs-random TCAV scores (the test's null): over 20 seeds of random
    sets, the t-test rejects at 0.05 about as often as it should (at most 3 times, 1 expected)."""
    x = planted.train.x.flatten(1).numpy()
    gradients = _cav.layer_gradients(planted.model, planted.model.features, planted.test.x, 1, 16,
                                     torch.device("cpu"), "flatten")
    p_values = []
    for seed in range(20):
        sets = [x[i] for i in _cav.random_sets(len(x), 50, 14, np.random.default_rng(seed))]
        first, second = (_cav.tcav_scores(gradients, _cav.random_cavs(part, 6, 1.0)) for part in (sets[:7], sets[7:]))
        p_values.append(_cav.t_test(first, second))
    assert np.sum(np.array(p_values) < 0.05) <= 3, p_values


def test_layer_gradients_are_the_analytic_ones_and_leave_grads_alone(planted):
    x = planted.test.x[:5]
    for k, sign in ((0, -1.0), (1, 1.0)):
        g = _cav.layer_gradients(planted.model, planted.model.features, x, k, 2, torch.device("cpu"), "flatten")
        np.testing.assert_allclose(g, sign * DIRECTION.numpy()[None].repeat(5, 0), atol=1e-7)
    net = tiny_convnet(seed=1, n_classes=2)
    x = torch.rand(6, 3, 8, 8, requires_grad=True)
    _cav.layer_gradients(net, net.features.act2, x, 1, 4, torch.device("cpu"), "channel_mean")
    assert x.grad is None and all(p.grad is None for p in net.parameters())


def _conv_context(seed=0):
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.random((60, 3, 8, 8)), dtype=torch.float32)
    table = rng.integers(0, 2, (60, 2)).astype(np.float32)
    return _ctx(tiny_convnet(seed=2, n_classes=2), x, table, ["a", "b"], x[:20], torch.arange(20) % 2, seed=seed)


def test_same_seed_same_record_and_batch_size_does_not_matter():
    params = {**TCAV_PARAMS, "layer": "conv2", "n_concept_examples": 15, "n_runs": 3, "n_random": 3}
    first = TCAV(**params).explain(_conv_context())
    again = TCAV(**params).explain(_conv_context())
    other_batches = TCAV(**{**params, "batch_size": 3}).explain(_conv_context())
    assert first.tests == again.tests and first.random_scores == again.random_scores
    assert [t["run_scores"] for t in first.tests] == [t["run_scores"] for t in other_batches.tests]
    assert first.random_scores == other_batches.random_scores


@pytest.mark.parametrize("over, message", [
    ({"n_runs": 1}, r"'tcav'\.n_runs: 1 is out of range, expected >= 2"),
    ({"n_random": 0}, r"'tcav'\.n_random: 0 is out of range, expected >= 2"),
    ({"alpha": 1.5}, r"'tcav'\.alpha: 1\.5 is out of range, expected > 0 and < 1"),
    ({"cav_l2": 0}, r"'tcav'\.cav_l2: 0 is out of range, expected > 0"),
    ({"n_inputs": 2.5}, r"'tcav'\.n_inputs: expected an integer >= 1, got 2\.5"),
    ({"layer": 3}, r"'tcav'\.layer: expected a non-empty string, got 3"),
])
def test_bad_parameters_are_refused(over, message):
    with pytest.raises(ParamError, match=message):
        TCAV(**{**TCAV_PARAMS, **over})


def test_fit_learns_the_cavs_and_explaining_scores_them(planted):
    """The CAVs come from the train split alone; explaining is fitting, then scoring on the test split."""
    method = TCAV(**TCAV_PARAMS).fit(planted.model, planted.train, seed=planted.seed, info=planted.info)
    assert list(method.concept_cavs_) == ["planted"] and method.concept_cavs_["planted"].shape == (10, D)
    assert method.random_cavs_.shape == (10, D)
    # every concept CAV leans towards the planted direction (50 noisy examples: not exactly along it)
    assert (method.concept_cavs_["planted"] @ DIRECTION.numpy() > 0.5).all()
    record, _ = method._run(planted)
    assert record.tests == TCAV(**TCAV_PARAMS).explain(planted).tests


def test_scoring_before_fitting_or_with_another_model_is_refused(planted):
    with pytest.raises(RuntimeError, match="call fit"):
        TCAV(**TCAV_PARAMS)._run(planted)
    other = TCAV(**TCAV_PARAMS).fit(PlantedLinear(DIRECTION), planted.train)
    with pytest.raises(RuntimeError, match="for this model"):
        other._run(planted)
    with pytest.raises(RuntimeError, match="call fit"):
        ACE(**ACE_PARAMS)._run(planted)


def test_unknown_layer_and_missing_concepts_are_clear_errors(planted):
    with pytest.raises(ValueError, match=r"layer 'conv9' is not a unit layer.*\['features'\]"):
        TCAV(**{**TCAV_PARAMS, "layer": "conv9"}).explain(planted)
    no_concepts = _ctx(planted.model, planted.train.x, None, [], planted.test.x, planted.test.y)
    with pytest.raises(ValueError, match="concept annotations"):
        TCAV(**TCAV_PARAMS).explain(no_concepts)


def test_applicability():
    traits = {"architecture": "cnn", "activation": "relu", "gap_head": True, "linear_head": True}
    assert TCAV.why_not(DATASETS["shapes"], traits) is None and ACE.why_not(DATASETS["shapes"], traits) is None
    assert "concept" in TCAV.why_not(DATASETS["digits"], traits)
    assert ACE.why_not(DATASETS["digits"], traits) is None
    assert "image" in ACE.why_not(DATASETS["iris"], {**traits, "architecture": "mlp"})


def test_record_round_trip_and_table2_excerpt(planted, tmp_path):
    record = TCAV(**TCAV_PARAMS).explain(planted)
    back = load_explanation(record.save(tmp_path / "tcav.json"))
    assert isinstance(back, ConceptScores) and back == record
    assert "planted → pos: TCAV 1.00" in _excerpt(back, {})
    with pytest.raises(ValueError, match="not in concepts"):
        ConceptScores(concepts=["a"], layer="l", class_names=["x"], alpha=0.05, random_scores=[[]],
                      tests=[{"concept": "b", "class": 0}])


# ACE ------------------------------------------------------------------------------------------------


class ColourModel(nn.Module):
    """Layer ``pixels`` = the input; logits (mean green − mean red, mean red − mean green)."""

    architecture = "cnn"

    def __init__(self):
        super().__init__()
        self.pixels = nn.Identity()

    def forward(self, x):
        m = self.pixels(x).mean(dim=(2, 3))
        s = m[:, 0] - m[:, 1]
        return torch.stack([-s, s], dim=1)

    def unit_layers(self):
        return {"pixels": self.pixels}


def two_region_images(n, seed, size=16):
    """Each image: a red and a green rectangle split at a random row or column; masks (n, 2, H, W)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 3, size, size), dtype=np.float32)
    masks = np.zeros((n, 2, size, size), dtype=bool)
    for i in range(n):
        cut = rng.integers(5, 12)
        red = np.zeros((size, size), dtype=bool)
        if rng.random() < 0.5:
            red[:, :cut] = True
        else:
            red[:cut, :] = True
        masks[i] = red, ~red
        x[i, 0][red], x[i, 1][~red] = 0.9, 0.8
    x += 0.03 * rng.random(x.shape, dtype=np.float32)
    return torch.from_numpy(x), masks


ACE_PARAMS = {"layer": "pixels", "n_images": 12, "resolutions": [4], "compactness": 5.0, "n_clusters": 2,
              "min_members": 4, "n_members": 10, "n_runs": 12, "n_random": 12, "alpha": 0.05, "cav_l2": 1.0,
              "batch_size": 16}


@pytest.fixture(scope="module")
def regions():
    x_train, _ = two_region_images(40, 0)
    x_test, masks = two_region_images(12, 1)
    info = DatasetInfo("toy", "image", 2, (3, 16, 16), True, False, "test toy")
    ctx = _ctx(ColourModel(), x_train, None, [], x_test, torch.zeros(12, dtype=torch.long), info=info)
    ctx.test.masks, ctx.test.meta["mask_names"] = masks, ["red", "green"]
    return ctx


def test_ace_recovers_the_two_segment_types_and_their_importance(regions):
    record = ACE(**ACE_PARAMS).explain(regions)
    assert len(record.concepts) == 2 and record.concept_classes == [0, 0]
    kinds = []
    for members in record.members:
        assert len(members) == 10
        inside = [[(decode_runs(m["runs"], (16, 16)) & ~regions.test.masks[m["image"], c]).sum() == 0
                   for c in (0, 1)] for m in members]
        kind = {c for row in inside for c, ok in enumerate(row) if ok}
        assert len(kind) == 1 and all(any(row) for row in inside)   # every member inside one region type
        kinds.append(kind.pop())
    assert sorted(kinds) == [0, 1]
    # class 0's logit rises with green and falls with red: TCAV 1 for the green concept, 0 for the red one
    for name, kind in zip(record.concepts, kinds):
        test = _test(record, name, 0)
        assert test["tcav_score"] == (1.0 if kind == 1 else 0.0) and test["significant"], test


def test_ace_is_deterministic_and_checks_its_parameters(regions):
    first, again = ACE(**ACE_PARAMS).explain(regions), ACE(**ACE_PARAMS).explain(regions)
    assert first.members == again.members and first.tests == again.tests
    with pytest.raises(ParamError, match=r"'ace'\.resolutions: expected list of .*got 0 items"):
        ACE(**{**ACE_PARAMS, "resolutions": []})
    with pytest.raises(ParamError, match=r"'ace'\.resolutions\[1\]: 0 is out of range"):
        ACE(**{**ACE_PARAMS, "resolutions": [4, 0]})
    with pytest.raises(ParamError, match=r"min_members \(11\) must not exceed n_members \(10\)"):
        ACE(**{**ACE_PARAMS, "min_members": 11})
    with pytest.raises(ParamError, match=r"'ace'\.compactness: -1 is out of range, expected > 0"):
        ACE(**{**ACE_PARAMS, "compactness": -1})


def test_ace_fits_the_random_segments_and_null_cavs_on_the_train_split(regions):
    method = ACE(**ACE_PARAMS).fit(regions.model, regions.train, seed=regions.seed)
    assert len(method.random_sets_) == 13 and all(len(r) == 10 for r in method.random_sets_)
    assert method.random_cavs_.shape == (12, 3)
    torch.testing.assert_close(method.fill_, regions.train.x.mean(dim=(0, 2, 3)))
    record, _ = method._run(regions)
    assert record.tests == ACE(**ACE_PARAMS).explain(regions).tests


def test_run_length_code_round_trips():
    mask = np.random.default_rng(4).random((9, 7)) < 0.4
    assert np.array_equal(decode_runs(encode_runs(mask), mask.shape), mask)


# A CNN trained on the real shapes generator ------------------------------------------------------------


def test_stripes_is_significant_for_the_positive_class_of_a_trained_shapes_cnn():
    """Label = stripes and not triangle: moving conv2 towards "stripes" raises the positive logit.  (Checked
    on six training seeds: stripes is significant for the positive class on each, p <= 3e-4.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net, train, _ = train_shapes_cnn(n_train=1500, epochs=4)
    finally:
        torch.set_num_threads(threads)
    test = shapes.generate(300, [0, 2])
    with torch.no_grad():
        assert (net(torch.from_numpy(test["x"])).argmax(1).numpy() == test["y"]).mean() >= 0.8

    def split(d):
        return PreparedSplit(x=torch.from_numpy(d["x"]), y=torch.from_numpy(d["y"]), concepts=d["concepts"],
                             meta={"class_names": list(shapes.CLASS_NAMES),
                                   "concept_features": shapes.CONCEPT_FEATURES})

    ctx = ExplainContext(model=net, dataset="shapes", model_id="cnn", info=DATASETS["shapes"], train=split(train),
                         test=split(test), seed=0)
    record = TCAV(layer="conv2", n_concept_examples=30, n_runs=20, n_random=20, alpha=0.05, cav_l2=1.0,
                  n_inputs=40, batch_size=100).explain(ctx)
    assert record.concepts == ["shape=circle", "shape=square", "shape=triangle", "texture=stripes", "colour=red",
                               "colour=green", "colour=blue"]
    stripes = _test(record, "texture=stripes", 1)
    assert stripes["significant"] and stripes["tcav_score"] > 0.9 > stripes["random_mean"], stripes
