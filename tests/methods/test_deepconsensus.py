"""DeepConsensus [116]: consensus of identical and of unrelated members, the members' checkpoints, the
matched clusters, end to end from checkpoints written to a work directory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnxai.methods.attribution.aggregation.deepconsensus import (DeepConsensus, consensus_maps, matched_clusters,
                                                     rank_agreement)
from nnxai.methods.attribution.gradient.saliency import Gradient
from nnxai.metrics.consensus import ConsensusAgreement
from nnxai.models import save_checkpoint
from nnxai.params import ParamError

from toy_models import tiny_convnet, toy_context

PARAMS = {"local_method": "gradient", "local_params": {"n_explain": 12, "batch_size": 5}, "seeds": [1, 2],
          "min_agree": 2, "n_clusters": 2}


def test_identical_members_agree_fully_and_their_consensus_is_their_map():
    maps = np.random.default_rng(0).normal(size=(1, 20, 3, 6, 6))
    maps = np.repeat(maps, 3, axis=0)
    consensus = consensus_maps(maps)
    np.testing.assert_allclose(consensus, maps[0], rtol=1e-12, atol=1e-12)
    agreement = rank_agreement(maps, consensus)
    np.testing.assert_allclose(agreement["pairs"], 1.0)
    np.testing.assert_allclose(agreement["to_consensus"], 1.0)


def test_unrelated_members_agree_about_zero():
    maps = np.random.default_rng(1).normal(size=(3, 200, 1, 8, 8))
    agreement = rank_agreement(maps, consensus_maps(maps))
    assert agreement["pairs"].shape == (200, 3)
    assert abs(agreement["pairs"].mean()) < 0.02
    # Each member is a third of the (normalised) consensus, so it agrees with it more than with the others.
    assert agreement["to_consensus"].mean() > agreement["pairs"].mean() + 0.15


def test_consensus_averages_unit_maps_and_keeps_the_mean_norm():
    a = np.zeros((2, 1, 4))
    a[0, 0] = [3.0, 0.0, 0.0, 0.0]                         # norm 3
    a[1, 0] = [0.0, 1.0, 0.0, 0.0]                         # norm 1
    np.testing.assert_allclose(consensus_maps(a)[0], 2.0 * np.array([0.5, 0.5, 0.0, 0.0]))


def test_clusters_of_identical_members_match_one_to_one():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(30, 5, 5))
    clusters = matched_clusters(np.stack([base, base, base]), 3, seed=0)
    assert [c["matches"] for c in clusters] == [[j, j, j] for j in range(3)]
    np.testing.assert_allclose([c["correlations"] for c in clusters], 1.0)
    assert sum(c["size"] for c in clusters) == 30


def test_required_inputs_are_the_other_seed_checkpoints():
    assert DeepConsensus.required_inputs(PARAMS, "digits", "baseline") == [
        "data/checkpoints/digits/baseline_seed1.pt", "data/checkpoints/digits/baseline_seed2.pt"]
    assert DeepConsensus.required_inputs(PARAMS, "digits", "baseline_seed2") == [
        "data/checkpoints/digits/baseline_seed1.pt"]


def write_members(workdir, models):
    for k, model in models.items():
        record = {"architecture": "cnn", "arch_kwargs": {"in_channels": 3, "n_classes": 3, "widths": (4, 6, 8)}}
        save_checkpoint(workdir / f"data/checkpoints/toy/baseline_seed{k}.pt", model, record)


def context(tmp_path, model):
    x = torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    ctx = toy_context(model, x, x, n_classes=3)
    ctx.workdir, ctx.model_id = tmp_path, "baseline"
    return ctx


def test_copies_of_the_explained_network_give_its_own_map_and_agreement_one(tmp_path):
    model = tiny_convnet(0)
    write_members(tmp_path, {1: model, 2: model})
    ctx = context(tmp_path, model)
    record = DeepConsensus(**PARAMS).explain(ctx)
    own = Gradient(**PARAMS["local_params"]).explain(ctx)
    np.testing.assert_array_equal(record.indices, own.indices)
    np.testing.assert_allclose(record.attributions, own.attributions, rtol=1e-5, atol=1e-7)
    scores = ConsensusAgreement()(record, ctx)
    assert scores["consensus_agreement"] == pytest.approx(1.0)
    assert scores["consensus_agreement.prediction"] == 1.0
    assert record.meta["deepconsensus"]["votes"] == [3] * 12


def test_differently_seeded_networks_agree_less_and_vote_as_they_predict(tmp_path):
    model = tiny_convnet(0)
    others = {1: tiny_convnet(1), 2: tiny_convnet(2)}
    write_members(tmp_path, others)
    ctx = context(tmp_path, model)
    record = DeepConsensus(**PARAMS).explain(ctx)
    with torch.no_grad():
        predictions = [m(ctx.test.x[record.indices]).argmax(1) for m in (model, *others.values())]
    votes = sum((p == predictions[0]).int() for p in predictions)
    assert votes.min() >= 2          # the record keeps the inputs the (3, 2) vote accepts
    assert ConsensusAgreement()(record, ctx)["consensus_agreement"] < 0.99
    again = DeepConsensus(**PARAMS).explain(ctx)
    assert again.meta["deepconsensus"] == record.meta["deepconsensus"]


def test_a_missing_member_checkpoint_is_named(tmp_path):
    ctx = context(tmp_path, tiny_convnet(0))
    with pytest.raises(Exception, match="baseline_seed1.pt"):
        DeepConsensus(**PARAMS).explain(ctx)


@pytest.mark.parametrize("change, message", [
    ({"seeds": []}, r"'deepconsensus'\.seeds: expected list of .*got 0 items"),
    ({"seeds": [1, 1]}, r"'deepconsensus'\.seeds: items must be distinct, got \[1, 1\]"),
    ({"seeds": [0]}, r"'deepconsensus'\.seeds\[0\]: 0 is out of range, expected >= 1"),
    ({"min_agree": 4}, r"'deepconsensus'\.min_agree: at most the 3 members"),
    ({"min_agree": 0}, r"'deepconsensus'\.min_agree: 0 is out of range"),
    ({"n_clusters": 0}, r"'deepconsensus'\.n_clusters: 0 is out of range"),
    ({"local_method": "deepconsensus"}, r"'deepconsensus'\.local_method: 'deepconsensus' is not one of"),
    ({"local_params": {"n_explain": 12}}, r"'deepconsensus'\.local_params \(gradient\).*missing \['batch_size'\]"),
])
def test_bad_parameters_are_refused_up_front(change, message):
    with pytest.raises(ParamError, match=message):
        DeepConsensus(**{**PARAMS, **change})
    with pytest.raises(ParamError, match=message):
        DeepConsensus.required_inputs({**PARAMS, **change}, "digits", "baseline")


def test_the_n_k_vote_decides_which_inputs_the_consensus_explains(tmp_path):
    # [116]'s (n, k) consensus: an input is explained only when at least k of the n members predict its
    # class; the votes of every candidate stay in meta, so the share accepted is reported.
    import copy

    model = tiny_convnet(0)
    ctx = context(tmp_path, model)
    with torch.no_grad():                   # a member that predicts the runner-up class where the margin is small
        top = model(ctx.test.x).topk(2, dim=1)
        margin = top.values[:, 0] - top.values[:, 1]
        runner = int(top.indices[:, 1].mode().values)
        shifted = copy.deepcopy(model)
        shifted.classifier.bias[runner] += float(margin[top.indices[:, 1] == runner].median())
    others = {1: model, 2: shifted}
    write_members(tmp_path, others)
    with torch.no_grad():
        predictions = [m(ctx.test.x).argmax(1) for m in (model, *others.values())]
    votes = sum((p == predictions[0]).int() for p in predictions)
    assert set(votes.tolist()) == {2, 3}                       # the members disagree on some inputs only
    for k in (1, 2, 3):
        if not (votes >= k).any():
            with pytest.raises(ValueError, match="accepts none"):
                DeepConsensus(**{**PARAMS, "min_agree": k}).explain(ctx)
            continue
        record = DeepConsensus(**{**PARAMS, "min_agree": k}).explain(ctx)
        meta = record.meta["deepconsensus"]
        assert meta["votes"] == votes.tolist() and meta["candidates"] == list(range(12))
        np.testing.assert_array_equal(record.indices, np.flatnonzero(votes.numpy() >= k))
        assert len(meta["spearman_to_consensus"]) == len(record.indices)
        share = ConsensusAgreement()(record, ctx)["consensus_agreement.prediction"]
        assert float(share) == pytest.approx(float((votes >= k).double().mean()))
