"""The MONK's problems follow their published definitions (Thrun et al. 1991)."""

import numpy as np
import pytest

from nnxai.data import DATASETS, monks


def _build(k, seed=0):
    info = DATASETS[f"monks{k}"]
    return info.build(info.planned_sizes(dict.fromkeys(("train", "val", "test"))), seed, None)


def test_the_instance_space_is_every_robot_once():
    space = monks.attribute_space()
    assert space.shape == (432, 6) and len({tuple(r) for r in space}) == 432
    assert [int(space[:, k].max()) for k in range(6)] == list(monks.CARDINALITIES)
    x = monks.one_hot(space)
    assert x.shape == (432, 17) and np.all(x.sum(1) == 6)
    assert np.array_equal(monks.attributes_of(x), space)
    assert monks.FEATURE_NAMES[:4] == ["a1=1", "a1=2", "a1=3", "a2=1"] and monks.FEATURE_NAMES[-1] == "a6=2"


def test_the_rules_and_their_class_balance():
    """Written from the report's definitions; the counts of positive robots are the report's (216, 142, 228)."""
    a = monks.attribute_space()
    assert monks.label(1, a).sum() == 216 and monks.label(2, a).sum() == 142 and monks.label(3, a).sum() == 228
    robot = np.array([[2, 2, 1, 1, 4, 1], [1, 2, 1, 1, 1, 2], [1, 2, 1, 1, 2, 2], [3, 1, 2, 1, 3, 2]])
    assert monks.label(1, robot).tolist() == [1, 1, 0, 0]
    assert monks.label(2, robot).tolist() == [0, 0, 0, 1]              # first values: 3, 4, 3 and 2 of them
    assert monks.label(2, np.array([[1, 1, 2, 2, 2, 2], [1, 2, 2, 2, 2, 1]])).tolist() == [1, 1]
    assert monks.label(3, np.array([[1, 3, 1, 1, 3, 1], [1, 3, 1, 2, 3, 1], [1, 1, 1, 2, 4, 1],
                                    [1, 1, 1, 2, 2, 1]])).tolist() == [1, 0, 0, 1]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_splits_have_the_reports_sizes_and_the_test_split_is_the_whole_clean_space(k):
    splits, meta = _build(k)
    assert len(splits["train"]["y"]) == monks.TRAIN_SIZES[k]
    assert len(splits["test"]["y"]) == 432 and len(splits["val"]["y"]) == 432 - monks.TRAIN_SIZES[k]
    assert not set(splits["train"]["index"]) & set(splits["val"]["index"])
    rule = DATASETS[f"monks{k}"].planted_rule
    assert rule.exhaustive and rule.feature_space == "inputs"
    assert np.array_equal(splits["test"]["x"], rule.space) and np.array_equal(splits["test"]["y"], rule.labels)
    clean = rule.classify(splits["train"]["x"])
    flipped = np.flatnonzero(clean != splits["train"]["y"])
    assert flipped.tolist() == meta["flipped_train_rows"]
    assert len(flipped) == (6 if k == 3 else 0)                        # 5 % of 122, as the report's set
    again, _ = _build(k)
    assert all(np.array_equal(splits[s]["x"], again[s]["x"]) for s in splits)
    other, _ = _build(k, seed=1)
    assert not np.array_equal(splits["train"]["index"], other["train"]["index"])


def test_sizes_are_fixed():
    with pytest.raises(ValueError, match=r"monks1.*fixed sizes.*'train': 100"):
        DATASETS["monks1"].planned_sizes({"train": 100, "val": None, "test": None})
    assert DATASETS["monks2"].planned_sizes({"train": 169, "val": None, "test": 432})["val"] == 263
