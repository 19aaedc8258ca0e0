"""``tcav_score``, ``p_value`` and ``concept_coherence`` on hand-made concept records: values worked out by
hand, their optimum for perfect records and chance level for random ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnxai.data import DATASETS, DatasetInfo, PreparedSplit
from nnxai.explanations import ConceptScores
from nnxai.ops import cav as _cav
from nnxai.ops.segments import encode_runs
from nnxai.methods.attribution.concept.ace import ACE
from nnxai.methods.attribution.gradient.grad_cam import GradCAM
from nnxai.methods.attribution.concept.tcav import TCAV
from nnxai.methods.base import ExplainContext
from nnxai.metrics.concepts import ConceptCoherence, PValue, TCAVScore, within_between_cosine


def _test(concept, k, t, r, p, significant):
    return {"concept": concept, "class": k, "tcav_score": t, "run_scores": [t], "random_mean": r, "p_value": p,
            "p_value_corrected": min(1.0, 3 * p), "significant": significant}


def _record(tests, random_scores=([0.4, 0.4], [0.5]), **extra):
    concepts = list(dict.fromkeys(t["concept"] for t in tests))
    return ConceptScores(concepts=concepts, layer="conv2", class_names=["neg", "pos"], tests=tests,
                         random_scores=[list(r) for r in random_scores], alpha=0.05, **extra)


def test_tcav_score_and_p_value_by_hand():
    record = _record([_test("a", 0, 0.8, 0.4, 0.001, True), _test("b", 0, 0.1, 0.4, 0.01, True),
                      _test("a", 1, 0.9, 0.5, 0.2, False)])
    out = TCAVScore()(record, None, None)
    assert out["tcav_score"] == pytest.approx(((0.8 - 0.4) / 0.6 + (0.4 - 0.1) / 0.4 + 0.0) / 3)
    assert out["tcav_score.a.neg"] == 0.8 and out["tcav_score.a.pos"] == 0.9 and out["tcav_score.b.neg"] == 0.1
    assert out["tcav_score.random.neg"] == pytest.approx(0.4) and out["tcav_score.random.pos"] == 0.5
    p = PValue()(record, None, None)
    # pairs one by one, aggregated as a count: never the mean of the p-values ((0.003 + 0.03 + 0.6) / 3)
    assert p["p_value"] == p["p_value.significant"] == pytest.approx(2 / 3)
    assert (p["p_value.n_significant"], p["p_value.n_pairs"]) == (2.0, 3.0)
    assert p["p_value.a.neg"] == pytest.approx(0.003) and p["p_value.a.pos"] == pytest.approx(0.6)
    assert PValue.higher_is_better
    with pytest.raises(ValueError, match="tests no"):
        TCAVScore()(_record([]), None, None)


def _synthetic_record(concept_cavs, seed):
    """Tests of 20 concepts on one class whose layer gradients share a direction g (plus noise)."""
    rng = np.random.default_rng(seed)
    g = rng.normal(size=16)
    gradients = {1: g + 0.5 * rng.normal(size=(60, 16))}
    cavs = {f"c{i}": concept_cavs(rng, g) for i in range(20)}
    null = rng.normal(size=(10, 16))
    tests, random = _cav.significance_tests([(c, 1) for c in cavs], cavs, null, gradients, alpha=0.05)
    return ConceptScores(concepts=list(cavs), layer="l", class_names=["neg", "pos"], tests=tests,
                         random_scores=[[], random[1]], alpha=0.05)


def test_optimum_for_perfect_concepts_and_chance_for_random_ones():
    perfect = _synthetic_record(lambda rng, g: g + 0.01 * rng.normal(size=(10, 16)), seed=0)
    out, p = TCAVScore()(perfect, None, None), PValue()(perfect, None, None)
    assert out["tcav_score"] == 1.0 and p["p_value.significant"] == 1.0 and p["p_value"] == 1.0
    assert max(v for k, v in p.items() if k.startswith("p_value.c")) < 0.05
    # concepts whose CAVs are as random as the null's: nothing beyond chance
    random = _synthetic_record(lambda rng, g: rng.normal(size=(10, 16)), seed=1)
    out, p = TCAVScore()(random, None, None), PValue()(random, None, None)
    assert out["tcav_score"] <= 0.05 and p["p_value.significant"] <= 0.05 and p["p_value"] <= 0.05


def test_which_methods_the_metrics_apply_to():
    shapes, digits = DATASETS["shapes"], DATASETS["digits"]
    assert TCAVScore.applies(TCAV, shapes) and PValue.applies(TCAV, shapes)
    assert TCAVScore.applies(ACE, digits) and ConceptCoherence.applies(ACE, digits)
    assert not PValue.applies(ACE, digits) and not ConceptCoherence.applies(TCAV, shapes)
    assert not TCAVScore.applies(GradCAM, shapes)


# concept_coherence ---------------------------------------------------------------------------------------


class ColourModel(nn.Module):
    architecture = "cnn"

    def __init__(self):
        super().__init__()
        self.pixels = nn.Identity()

    def forward(self, x):
        return self.pixels(x).mean(dim=(2, 3))[:, :2]

    def unit_layers(self):
        return {"pixels": self.pixels}


@pytest.fixture(scope="module")
def regions():
    """16 images: a red and a green rectangle split at a random column; masks (red, green, evidence)."""
    rng = np.random.default_rng(0)
    x = np.zeros((16, 3, 12, 12), dtype=np.float32)
    masks = np.zeros((16, 3, 12, 12), dtype=bool)
    for i in range(16):
        red = np.zeros((12, 12), dtype=bool)
        red[:, :rng.integers(4, 9)] = True
        masks[i] = red, ~red, np.ones_like(red)
        x[i, 0][red], x[i, 1][~red] = 0.9, 0.8
    return torch.from_numpy(x + 0.05 * rng.random(x.shape, dtype=np.float32)), masks


def _segment(image, mask):
    rows, cols = np.nonzero(mask)
    return {"image": image, "resolution": 4, "segment": 0, "area": int(mask.sum()), "runs": encode_runs(mask),
            "bbox": [int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1]}


def _coherence_ctx(regions, with_masks):
    x, masks = regions
    info = DatasetInfo("toy", "image", 2, (3, 12, 12), with_masks, False, "test toy")
    split = PreparedSplit(x=x, y=torch.zeros(len(x), dtype=torch.long), masks=masks if with_masks else None,
                          meta={"mask_names": ["red", "green", "evidence"]})
    return ExplainContext(model=ColourModel(), dataset="toy", model_id="toy", info=info, train=split, test=split)


def _coherence_record(regions, shuffle_seed=None):
    """Concept 0: the red rectangles, concept 1: the green ones (or the 32 segments dealt out at random)."""
    _x, masks = regions
    segments = [_segment(i, masks[i, c]) for c in (0, 1) for i in range(16)]
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(32)
        segments = [segments[i] for i in order]
    tests = [{"concept": n, "class": 0, "tcav_score": 0.5, "run_scores": [0.5], "random_mean": 0.5, "p_value": 1.0,
              "p_value_corrected": 1.0, "significant": False} for n in ("c1", "c2")]
    return ConceptScores(concepts=["c1", "c2"], layer="pixels", class_names=["a", "b"], tests=tests,
                         random_scores=[[0.5], []], alpha=0.05, concept_classes=[0, 0],
                         members=[segments[:16], segments[16:]], meta={"fill": [0.3, 0.3, 0.0]})


def test_coherence_is_one_for_pure_concepts_and_chance_when_dealt_at_random(regions):
    ctx = _coherence_ctx(regions, with_masks=True)
    out = ConceptCoherence()(_coherence_record(regions), ctx, None)
    assert out["concept_coherence"] == pytest.approx(1.0) and out["concept_coherence.chance"] == pytest.approx(0.5)
    # two concepts whose members coincide: centred cosines 1 within and -1 between
    assert out["concept_coherence.within_cosine"] > 0.99 and out["concept_coherence.between_cosine"] < -0.99
    shuffled = [ConceptCoherence()(_coherence_record(regions, seed), ctx, None) for seed in range(5)]
    assert np.mean([o["concept_coherence"] for o in shuffled]) == pytest.approx(0.5, abs=0.1)
    assert all(o["concept_coherence.chance"] == pytest.approx(0.5) for o in shuffled)


def test_coherence_without_masks_is_within_minus_between_cosine(regions):
    ctx = _coherence_ctx(regions, with_masks=False)
    out = ConceptCoherence()(_coherence_record(regions), ctx, None)
    assert out["concept_coherence"] == pytest.approx(out["concept_coherence.within_cosine"]
                                                     - out["concept_coherence.between_cosine"])
    assert out["concept_coherence"] > 1.98 and "concept_coherence.chance" not in out
    shuffled = np.mean([ConceptCoherence()(_coherence_record(regions, s), ctx, None)["concept_coherence"]
                        for s in range(5)])
    assert abs(shuffled) < 0.1


def test_coherence_needs_member_segments_of_this_test_split(regions):
    ctx = _coherence_ctx(regions, with_masks=True)
    no_members = _record([_test("a", 0, 0.8, 0.4, 0.001, True)])
    with pytest.raises(ValueError, match="no member segments"):
        ConceptCoherence()(no_members, ctx, None)
    record = _coherence_record(regions)
    record.members[0][0]["image"] = 99
    with pytest.raises(ValueError, match="test image 99 but the test split has 16"):
        ConceptCoherence()(record, ctx, None)


def test_within_between_cosine_is_the_pairwise_mean():
    rng = np.random.default_rng(5)
    unit = rng.normal(size=(17, 4))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    owner = rng.integers(0, 4, 17)
    sim = unit @ unit.T
    within = np.mean([np.mean([sim[i, j] for i in np.flatnonzero(owner == g) for j in np.flatnonzero(owner == g)
                               if i != j]) for g in np.unique(owner) if (owner == g).sum() > 1])
    between = np.mean([sim[i, j] for i in range(17) for j in range(17) if owner[i] != owner[j]])
    assert within_between_cosine(unit, owner) == pytest.approx((within, between))
