"""``python -m nnxai show FILE`` prints a record as a person reads it."""

import numpy as np

from nnxai.cli import main
from nnxai.explanations import AttributionMap, LocalRules, RuleSet


def test_show_prints_rules_local_rules_and_maps(tmp_path, capsys):
    rules = RuleSet(rules=[{"conditions": [{"m": 1, "literals": [{"feature": 0, "op": ">", "threshold": 0.5}]}],
                            "prediction": 1}], default=0, feature_names=["a5=1"], class_names=["no", "yes"],
                    feature_space="inputs", meta={"method": "mofn", "dataset": "monks1", "model": "baseline_sigmoid"})
    assert main(["show", str(rules.save(tmp_path / "r.json"))]) == 0
    out = capsys.readouterr().out
    assert "rule explanation by mofn of monks1/baseline_sigmoid" in out and "IF a5=1 > 0.5 THEN yes\nELSE no" in out
    local = LocalRules(indices=list(range(12)), targets=[0] * 12, explanations=[{"text": f"rule {k}"} for k in range(12)],
                       feature_names=["x"], class_names=["no", "yes"], feature_space="inputs")
    assert main(["show", str(local.save(tmp_path / "l.json")), "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "test input 1 (class no): rule 1" in out and "... 10 more inputs" in out and "rule 2" not in out
    maps = AttributionMap(np.array([[0.1, -3.0, 0.2]]), [4], [1], meta={"method": "gradient"})
    assert main(["show", str(maps.save(tmp_path / "m.npz"))]) == 0
    assert "test input 4 (class 1): most relevant features 1 (-3)" in capsys.readouterr().out


def test_show_names_a_missing_file(tmp_path, capsys):
    assert main(["show", str(tmp_path / "none.json")]) != 0
    assert "none.json" in capsys.readouterr().err


def test_show_prints_unit_images_and_surrogates(tmp_path, capsys):
    from nnxai.explanations import SurrogateModel, UnitImages

    images = UnitImages(units=[{"layer": "conv2", "unit": 3, "regulariser": "total_variation", "activation": 2.5}],
                        concepts=[], images=np.zeros((1, 3, 8, 8)), meta={"method": "activation_max"})
    assert main(["show", str(images.save(tmp_path / "u.npz"))]) == 0
    out = capsys.readouterr().out
    assert "1 images of shape (3, 8, 8)" in out and "conv2:3  activation 2.5, regulariser 'total_variation'" in out
    mimic = SurrogateModel(architecture={"type": "mlp", "hidden": [8]}, indices=[0, 1], logits=np.zeros((2, 3)),
                           parameters={"w": np.zeros((8, 4)), "b": np.zeros(8)}, meta={"method": "mimic"})
    assert main(["show", str(mimic.save(tmp_path / "s.npz"))]) == 0
    assert "40 parameters in 2 arrays" in capsys.readouterr().out


def test_show_prints_mmd_critic_prototypes_and_criticisms(tmp_path, capsys):
    """MMD-critic [147] selects prototypes and criticisms; `show` prints both, with class and witness."""
    from nnxai.explanations import Examples

    record = Examples(indices=[5], targets=[1], examples=[[40]], scores=[[0.5]],
                      extra={"prototypes": [40, 41], "prototype_classes": [1, 0], "prototype_witness": [0.001, -0.002],
                             "criticisms": [7, 8, 9], "criticism_classes": [0, 1, 1],
                             "criticism_witness": [0.25, -0.125, 0.0625]},
                      meta={"method": "mmd_critic", "dataset": "shapes", "model": "baseline"})
    assert main(["show", str(record.save(tmp_path / "mmd.json")), "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 prototypes (training positions): 40 (class 1, witness +0.001), 41 (class 0, witness -0.002)" in out
    assert "3 criticisms (training positions): 7 (class 0, witness +0.25), 8 (class 1, witness -0.125), ... 1 more" in out
    assert "test input 5 (class 1): training examples [40]" in out
