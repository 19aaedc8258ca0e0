"""The ``causal`` data set: a seeded linear-Gaussian SCM whose graph is exposed as data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnxai import data as nd
from nnxai.data import causal

SMALL = {"train": 64, "val": 24, "test": 24}


def _files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_registered_as_a_two_class_table_of_the_scm_width():
    info = nd.DATASETS["causal"]
    assert info.kind == "tabular" and info.n_classes == 2 and info.input_shape == (causal.SCM.n_features,)
    assert "causal" in nd.dataset_names("smoke") and causal.CAUSAL_GRAPHS["causal"] is causal.SCM


def test_the_documented_graph():
    scm = causal.SCM
    assert scm.names == ("x1", "x2", "x3", "x4", "x5", "x6")
    assert [scm.parents(i) for i in range(6)] == [[], [0], [0], [2], [], [1, 3]]
    np.testing.assert_allclose(np.diag(scm.covariance())[:4], [1.0, 1.0, 1.0, 0.98])


def test_prepare_is_byte_reproducible_and_seeded(tmp_path):
    first = _files(nd.prepare("causal", tmp_path / "a", SMALL, 3))
    second = _files(nd.prepare("causal", tmp_path / "b", SMALL, 3))
    other = _files(nd.prepare("causal", tmp_path / "c", SMALL, 4))
    assert sorted(first) == ["meta.json", "test.npz", "train.npz", "val.npz"]
    assert first == second
    assert first["train.npz"] != other["train.npz"]
    meta = json.loads(first["meta.json"])
    assert causal.LinearGaussianSCM.from_dict(meta["scm"]).same_as(causal.SCM)
    assert meta["label"]["weights"] == list(causal.LABEL.weights) and meta["feature_names"] == list(causal.SCM.names)
    part = nd.load_split("causal", "val", tmp_path / "a", verify=True)
    ref = causal.generate(SMALL["val"], [3, nd.SPLITS.index("val")])
    np.testing.assert_array_equal(part.x.numpy(), ref["x"])
    np.testing.assert_array_equal(part.y.numpy(), ref["y"])


def test_natural_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no natural split size"):
        nd.prepare("causal", tmp_path, None, 0)


@pytest.fixture(scope="module")
def large_sample():
    return causal.generate(40000, 7)


def test_regression_on_the_parents_recovers_the_coefficients_and_noise(large_sample):
    x = large_sample["x"].astype(np.float64)
    scm = causal.SCM
    for i in range(scm.n_features):
        design = np.column_stack([np.ones(len(x)), x[:, :i]])        # all earlier variables, not only parents
        coef, *_ = np.linalg.lstsq(design, x[:, i], rcond=None)
        np.testing.assert_allclose(coef[1:], scm.coefficients[i, :i], atol=0.02)
        assert coef[0] == pytest.approx(scm.intercepts[i], abs=0.02)
        residual = x[:, i] - design @ coef
        assert residual.std() == pytest.approx(scm.noise_std[i], rel=0.02)


def test_label_depends_on_x2_and_x4_only(large_sample):
    from sklearn.linear_model import LogisticRegression

    x, y = large_sample["x"].astype(np.float64), large_sample["y"]
    assert y.mean() == pytest.approx(0.5, abs=0.02)
    coef = LogisticRegression(C=1e6, max_iter=2000).fit(x, y).coef_[0]
    w = np.asarray(causal.LABEL.weights)
    # y = 1[w·x + ε > 0]: the logistic fit is proportional to w (probit ≈ logit up to scale); the
    # child X6, correlated with y, gets nothing once its parents X2, X4 are in the model.
    scale = coef[1] / w[1]
    np.testing.assert_allclose(coef, scale * w, atol=0.06 * abs(coef[1]))
    assert coef[3] / coef[1] == pytest.approx(w[3] / w[1], rel=0.05)
    assert abs(np.corrcoef(x[:, 5], y)[0, 1]) > 0.3       # X6 is predictive, although not a cause
