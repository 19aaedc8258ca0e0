"""Explanation records save and load themselves without loss."""

import numpy as np
import pytest

from nnxai.explanations import AttributionMap, Examples, RuleSet, UnitConcepts, load_explanation


def test_attribution_roundtrip(tmp_path):
    rec = AttributionMap(np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2), [4, 9], [1, 0], {"method": "x"})
    back = load_explanation(rec.save(tmp_path / "a.npz"))
    assert np.array_equal(back.attributions, rec.attributions) and back.indices.tolist() == [4, 9]
    assert back.meta == {"method": "x"}
    with pytest.raises(ValueError, match="same length"):
        AttributionMap(np.zeros((2, 3)), [1], [0, 1])


@pytest.mark.parametrize("record", [
    RuleSet(rules=[{"conditions": [{"m": 1, "literals": [{"feature": 0, "op": ">", "threshold": 0.5}]}],
                    "prediction": 1, "support": 3}], default=0, feature_names=["a", "b"], class_names=["n", "p"],
            feature_space="inputs", tree={"depth": 1, "n_leaves": 2}, meta={"method": "trepan"}),
    UnitConcepts(units=[{"layer": "conv1", "unit": 0, "concept": "c", "iou": 0.5}], concepts=["c"]),
    Examples(indices=[1], targets=[0], examples=[[3, 4]], scores=[[0.5, 0.1]], extra={"k": [1.0]}),
])
def test_json_records_roundtrip(tmp_path, record):
    back = load_explanation(record.save(tmp_path / "r.json"))
    assert type(back) is type(record) and back == record


def test_rule_set_semantics():
    # IF 2-of-{a > 0, b > 0, c > 0} THEN 1 ELSE 0
    cond = {"m": 2, "literals": [{"feature": i, "op": ">", "threshold": 0.0} for i in range(3)]}
    rules = RuleSet([{"conditions": [cond], "prediction": 1, "support": 0}], 0, ["a", "b", "c"], ["n", "p"], "inputs")
    x = np.array([[1, 1, -1], [1, -1, -1], [-1, -1, -1], [1, 1, 1]])
    assert rules.predict(x).tolist() == [1, 0, 0, 1]
    assert "2-of-{a > 0, b > 0, c > 0}" in rules.to_text()
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        rules.predict(np.zeros((2, 2)))


def test_wrong_kind_is_refused(tmp_path):
    path = UnitConcepts(units=[], concepts=[]).save(tmp_path / "u.json")
    with pytest.raises(ValueError, match="hidden_semantics"):
        RuleSet.load(path)
