"""SpRAy [67]: planted prediction strategies, the eigengap, the downsizing step, end to end on a toy CNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnxai.methods.attribution.aggregation.spray import SpRAy
from nnxai.ops.spectral import downsized_heatmaps, eigengap, knn_affinity, laplacian_spectrum, spectral_relevance_analysis
from nnxai.metrics.spray import permuted_within, purity
from nnxai.params import ParamError

from toy_models import tiny_convnet, toy_context

PARAMS = {"local_method": "gradient", "local_params": {"n_explain": 40, "batch_size": 16}, "heatmap_size": 4,
          "n_neighbors": 4, "max_clusters": 5}


def planted_heatmaps(rng, n_per=30, side=8, noise=0.05):
    """Heatmaps drawn from 3 well-separated prototypes (a bright square in three places) plus noise."""
    prototypes = np.zeros((3, side, side))
    prototypes[0, :3, :3] = prototypes[1, :3, -3:] = prototypes[2, -3:, 2:5] = 1.0
    truth = np.repeat(np.arange(3), n_per)
    maps = prototypes[truth] + noise * rng.normal(size=(len(truth), side, side))
    order = rng.permutation(len(truth))
    return maps[order][:, None], truth[order]


def test_planted_strategies_give_three_clusters_of_purity_one():
    maps, truth = planted_heatmaps(np.random.default_rng(0))
    found = spectral_relevance_analysis(downsized_heatmaps(maps, 8), 5, 8, seed=0)
    assert found["n_clusters"] == 3
    assert np.allclose(found["eigenvalues"][:3], 0.0, atol=1e-9) and found["eigenvalues"][3] > 0.1
    assert purity(found["labels"], truth) == 1.0
    for c in range(3):                              # each prototype is the normalised planted square
        square = downsized_heatmaps(maps[truth == truth[found["labels"] == c][0]], 8).mean(0)
        np.testing.assert_allclose(found["prototypes"][c], square, atol=1e-12)


def test_random_heatmaps_cluster_at_chance_purity():
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(150, 1, 8, 8))
    truth = rng.integers(0, 3, 150)
    found = spectral_relevance_analysis(downsized_heatmaps(maps, 8), 10, 8, seed=0)
    labels = found["labels"]
    classes = np.zeros(150, dtype=np.int64)
    chance = np.mean([purity(permuted_within(labels, classes, rng), truth) for _ in range(200)])
    assert abs(purity(labels, truth) - chance) < 0.06


def test_the_laplacian_has_one_zero_eigenvalue_per_connected_component():
    w = np.zeros((7, 7))
    for block in ([0, 1, 2], [3, 4], [5, 6]):
        w[np.ix_(block, block)] = 1.0
    np.fill_diagonal(w, 0.0)
    values, _ = laplacian_spectrum(w)
    np.testing.assert_allclose(values[:3], 0.0, atol=1e-12)
    assert values[3] > 0.5
    assert eigengap(values, 5) == (3, pytest.approx(values[3]))


def test_eigengap_picks_the_largest_gap_within_max_clusters():
    values = np.array([0.0, 0.01, 0.5, 0.52, 1.5])
    assert eigengap(values, 4) == (4, pytest.approx(0.98))          # gaps 0.01, 0.49, 0.02, 0.98
    assert eigengap(values, 3) == (2, pytest.approx(0.49))


def test_knn_affinity_is_the_symmetrised_neighbour_relation():
    points = np.array([[0.0], [1.0], [3.0], [7.0]])
    w = knn_affinity(points, 1)
    # nearest: 0→1, 1→0, 2→1, 3→2; symmetrised
    expected = np.zeros((4, 4))
    for i, j in ((0, 1), (2, 1), (3, 2)):
        expected[i, j] = expected[j, i] = 1.0
    np.testing.assert_array_equal(w, expected)


def test_downsizing_averages_blocks_of_the_channel_sum_and_normalises():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(3, 2, 8, 8))
    got = downsized_heatmaps(a, 4)
    summed = a.sum(1)
    slow = np.array([[summed[n, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean() for i in range(4) for j in range(4)]
                     for n in range(3)])
    np.testing.assert_allclose(got, slow / np.linalg.norm(slow, axis=1, keepdims=True), atol=1e-12)
    assert not downsized_heatmaps(np.zeros((1, 1, 4, 4)), 2).any()


def toy_run(seed=0):
    model = tiny_convnet(0, in_channels=3, n_classes=2)
    x = torch.rand(40, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    return SpRAy(**PARAMS).explain(toy_context(model, x, x, n_classes=2, seed=seed))


def test_end_to_end_clusters_every_class_with_enough_inputs_and_is_deterministic():
    record, again = toy_run(), toy_run()
    spray = record.meta["spray"]
    assert spray == again.meta["spray"] and np.array_equal(record.attributions, again.attributions)
    labels = np.asarray(spray["labels"])
    features = downsized_heatmaps(record.attributions, PARAMS["heatmap_size"])
    for c in np.unique(record.targets):
        members = record.targets == c
        entry = spray["classes"].get(str(c))
        if members.sum() <= PARAMS["n_neighbors"]:
            assert entry is None and (labels[members] == -1).all()
            continue
        # The record's clustering is the one of its downsized local maps, class by class.
        found = spectral_relevance_analysis(features[members], PARAMS["n_neighbors"], PARAMS["max_clusters"], 0)
        assert labels[members].tolist() == found["labels"].tolist()
        assert entry["n_clusters"] == found["n_clusters"] and entry["sizes"] == found["sizes"].tolist()
        np.testing.assert_allclose(np.asarray(entry["prototypes"]).reshape(found["n_clusters"], -1),
                                   found["prototypes"], atol=1e-12)


@pytest.mark.parametrize("change, message", [
    ({"local_method": "mame"}, r"'spray'\.local_method: 'mame' is not one of"),
    ({"local_params": {"n_explain": 4}}, r"'spray'\.local_params \(gradient\).*missing \['batch_size'\]"),
    ({"local_params": {"n_explain": 4, "batch_size": 0}}, r"'spray'\.local_params \(gradient\)\.batch_size: 0"),
    ({"heatmap_size": 0}, r"'spray'\.heatmap_size: 0 is out of range, expected >= 1"),
    ({"n_neighbors": 2.5}, r"'spray'\.n_neighbors: expected an integer >= 1, got 2\.5"),
    ({"max_clusters": True}, r"'spray'\.max_clusters: expected an integer >= 1, got True"),
])
def test_bad_parameters_are_refused_up_front(change, message):
    with pytest.raises(ParamError, match=message):
        SpRAy(**{**PARAMS, **change})


def test_the_local_method_is_built_from_local_params():
    method = SpRAy(**PARAMS)
    assert method.local.spec.id == "gradient" and method.local.params == PARAMS["local_params"]
    with pytest.raises(ParamError, match=r"'spray'\.local_params \(gradient\).*missing \['batch_size', 'n_explain'\]"):
        SpRAy(**{k: v for k, v in PARAMS.items() if k != "local_params"})


def test_tabular_models_are_refused():
    from nnxai.methods.base import model_traits
    from toy_models import tiny_mlp

    model = tiny_mlp(0, n_features=4, n_classes=2)
    ctx = toy_context(model, torch.randn(8, 4), torch.randn(8, 4), 2)
    assert "image" in SpRAy.why_not(ctx.info, model_traits(model))
