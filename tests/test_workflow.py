"""Target lists derive from the registry and the config (nothing typed twice)."""

from nnxai import registry
from nnxai.config import load_config
from nnxai.workflow import all_targets, experiment_cells, methods_for, settings_json, targets


def test_methods_follow_applicability():
    cfg = load_config({"profile": "smoke"})
    shapes = methods_for(cfg, "shapes", "baseline")
    assert "network_dissection" in shapes and "trepan" in shapes
    assert "network_dissection" not in methods_for(cfg, "digits", "baseline")   # no concept masks
    assert "trepan" not in methods_for(cfg, "digits", "baseline")               # no concepts
    assert "trepan" in methods_for(cfg, "iris", "baseline_sigmoid")
    for dataset, model, method in experiment_cells(cfg):
        assert registry.is_implemented(method)


def test_every_implemented_method_runs_somewhere_in_smoke():
    cfg = load_config({"profile": "smoke"})
    assert {m for _, _, m in experiment_cells(cfg)} == set(registry.implemented_ids())


def test_targets_cover_the_output_contract():
    cfg = load_config({"profile": "smoke"})
    groups = targets(cfg)
    paths = all_targets(cfg)
    assert "data/checkpoints/shapes/baseline.pt" in paths
    assert "data/explanations/shapes/baseline/integrated_gradients.npz" in paths
    assert "data/explanations/shapes/baseline/trepan.json" in paths
    assert "data/metrics/shapes/baseline/integrated_gradients.json" in paths
    assert "data/metrics/all.csv" in paths
    assert {f"paper/tables/table{i}.{e}" for i in range(1, 5) for e in ("md", "tex")} <= set(groups["tables"])
    assert {f"paper/figures/taxonomy3d.{e}" for e in ("pdf", "png", "html")} <= set(groups["figures"])
    assert len(paths) == len(set(paths))


def test_job_settings_are_slices():
    """A method's job depends on its own params only, so changing another method's params reruns nothing."""
    cfg = load_config({"profile": "smoke"})
    before = settings_json(cfg, "explain", dataset="shapes", model="baseline", method="gradient")
    cfg["method_params"]["integrated_gradients"]["n_steps"] += 1
    assert settings_json(cfg, "explain", dataset="shapes", model="baseline", method="gradient") == before
    train_before = settings_json(cfg, "train", dataset="shapes", model="baseline")
    cfg["data"]["digits"]["train"] += 1
    assert settings_json(cfg, "train", dataset="shapes", model="baseline") == train_before


def test_paper_profile_adds_the_torchvision_sets():
    paths = all_targets(load_config({"profile": "paper"}))
    assert "data/checkpoints/cifar10/baseline.pt" in paths
    assert "data/explanations/mnist/baseline/integrated_gradients.npz" in paths
    assert "data/explanations/mnist/baseline/network_dissection.json" not in paths   # no concept masks
