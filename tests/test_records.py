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


def test_oblique_and_first_order_literals():
    """An oblique test sums weighted features; an equality compares the positions of two one-hot groups
    (MONK-1's a1 = a2, which no single propositional rule states)."""
    from nnxai.data import monks

    x = np.array([[1.0, 2.0, 0.0], [3.0, 0.5, 0.0]])
    oblique = RuleSet(rules=[{"conditions": [{"m": 1, "literals": [{"weights": [[0, 1.0], [1, -2.0]], "op": "<=",
                                                                     "threshold": 0.0}]}], "prediction": 1}],
                      default=0, feature_names=["u", "v", "w"], class_names=["a", "b"], feature_space="inputs")
    assert oblique.predict(x).tolist() == [1, 0]
    assert "1*u - 2*v <= 0" in oblique.text
    space = monks.one_hot(monks.attribute_space())
    a1_is_a2 = {"equal": [list(monks.GROUPS[0]), list(monks.GROUPS[1])], "op": "==", "names": ["a1", "a2"]}
    a5_is_1 = {"feature": monks.FEATURE_NAMES.index("a5=1"), "op": ">", "threshold": 0.5}
    rules = RuleSet(rules=[{"conditions": [{"m": 1, "literals": [a1_is_a2]}], "prediction": 1},
                           {"conditions": [{"m": 1, "literals": [a5_is_1]}], "prediction": 1}],
                    default=0, feature_names=monks.FEATURE_NAMES, class_names=monks.CLASS_NAMES,
                    feature_space="inputs")
    assert np.array_equal(rules.predict(space), monks.label(1, monks.attribute_space()))
    assert rules.text.splitlines() == ["IF a1 = a2 THEN yes", "IF a5=1 > 0.5 THEN yes", "ELSE no"]


def test_local_rules_roundtrip_and_checks(tmp_path):
    from nnxai.explanations import LocalRules
    from nnxai.explanations.checks import SplitBounds
    from nnxai.io import BadFileError

    entry = {"text": "IF v > 1 THEN b (precision 0.97)", "precision": 0.97,
             "conditions": [{"m": 1, "literals": [{"feature": 1, "op": ">", "threshold": 1.0}]}]}
    record = LocalRules(indices=[3], targets=[1], explanations=[entry], feature_names=["u", "v"],
                        class_names=["a", "b"], feature_space="inputs", meta={"method": "anchors"})
    path = record.save(tmp_path / "anchors.json")
    again = load_explanation(path)
    assert again == record and again.to_text() == "test input 3 (class b): IF v > 1 THEN b (precision 0.97)"
    with pytest.raises(ValueError, match="'text' string"):
        LocalRules(indices=[3], targets=[1], explanations=[{}], feature_names=["u"], class_names=["a", "b"],
                   feature_space="inputs")
    bad = LocalRules(indices=[30], targets=[1], explanations=[entry], feature_names=["u", "v"],
                     class_names=["a", "b"], feature_space="inputs").save(tmp_path / "bad.json")
    with pytest.raises(BadFileError, match="indices"):
        load_explanation(bad, SplitBounds(n_test=10, n_train=10, n_classes=2))


def _unit_images():
    from nnxai.explanations import UnitImages

    images = np.linspace(0, 1, 2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    return UnitImages(units=[{"layer": "conv1", "unit": 0, "regulariser": "none", "activation": 1.5},
                             {"layer": "logits", "unit": 1, "regulariser": "l2", "concept": "stripes"}],
                      concepts=["stripes"], images=images, meta={"method": "activation_max"})


def _surrogate():
    from nnxai.explanations import SurrogateModel

    return SurrogateModel(architecture={"type": "mlp", "hidden": [4]}, indices=[0, 3],
                          logits=[[0.5, -0.5], [1.0, 2.0]], meta={"method": "mimic"},
                          parameters={"0.weight": np.ones((4, 6)), "0.bias": np.zeros(4)})


@pytest.mark.parametrize("make", [_unit_images, _surrogate])
def test_npz_records_roundtrip_dispatch_and_digest(tmp_path, make):
    import zipfile

    record = make()
    path = record.save(tmp_path / "r.npz")
    back = load_explanation(path)
    assert type(back) is type(record) and back.meta == record.meta
    for name in record.array_fields:
        a, b = getattr(record, name), getattr(back, name)
        if isinstance(a, dict):
            assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
        else:
            assert np.array_equal(a, b)
    # a changed array member is caught by the digest, naming the file
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    first = next(n for n in sorted(members) if n not in ("doc.npy", "meta.npy"))
    data = bytearray(members[first])
    data[-1] ^= 0xFF
    members[first] = bytes(data)
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as archive:
        for n, b in members.items():
            archive.writestr(n, b)
    with pytest.raises(Exception, match="bad.npz"):
        load_explanation(tmp_path / "bad.npz")


def test_npz_record_checks_its_values(tmp_path):
    from nnxai.explanations import UnitImages

    with pytest.raises(ValueError, match="2 images for 1 units"):
        UnitImages(units=[{"layer": "a", "unit": 0}], concepts=[], images=np.zeros((2, 1, 2, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        UnitImages(units=[{"layer": "a", "unit": 0}], concepts=[], images=np.full((1, 1, 2, 2), np.nan))
