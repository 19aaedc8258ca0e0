"""Target lists derive from the registry and the config (nothing typed twice)."""

import json

import pytest

from nnxai import registry
from nnxai.config import load_config
from nnxai.workflow import (MODEL_ROW, all_targets, code_files, code_inputs, evaluate_inputs, experiment_cells, explain_inputs,
                            methods_for, metrics_for, settings_json, stage_settings, targets)


def test_methods_follow_applicability():
    cfg = load_config({"profile": "smoke"})
    shapes = methods_for(cfg, "shapes", "baseline")
    assert "network_dissection" in shapes and "trepan" in shapes
    assert "network_dissection" not in methods_for(cfg, "digits", "baseline")   # no concept masks
    assert "trepan" not in methods_for(cfg, "digits", "baseline")               # no concepts
    assert "trepan" in methods_for(cfg, "iris", "baseline_sigmoid")
    for dataset, model, method in experiment_cells(cfg):
        assert registry.is_implemented(method)


def test_control_models_get_no_reexplaining_metrics():
    from nnxai.metrics.base import metrics

    cfg = load_config({})
    reexplaining = {m for m, cls in metrics().items() if cls.reexplains}
    assert {"continuity", "fragility", "sanity_model_randomisation", "input_invariance",
            "implementation_invariance"} <= reexplaining
    baseline = set(metrics_for(cfg, "shapes", "baseline", "gradient"))
    control = set(metrics_for(cfg, "shapes", "baseline_shuffled_labels", "gradient"))
    assert reexplaining & baseline == {"continuity", "fragility", "sanity_model_randomisation",
                                       "input_invariance", "implementation_invariance"}
    assert not control & reexplaining
    assert {"pixel_flipping", "entropy", "localisation", "runtime"} <= control   # cheap references kept
    assert "continuity" in metrics_for(cfg, "iris", "baseline_sigmoid", "gradient")   # not a control model
    assert "shuffled labels" in metrics()["continuity"].control_why_not("baseline_shuffled_labels")


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


def test_one_evaluate_job_per_explanation_and_one_per_model():
    cfg = load_config({"profile": "smoke"})
    settings = json.loads(settings_json(cfg, "evaluate", dataset="shapes", model="baseline"))
    assert set(settings["methods"]) == set(methods_for(cfg, "shapes", "baseline"))
    assert "completeness" in settings["methods"]["integrated_gradients"]
    assert "completeness" not in settings["methods"]["gradient"]
    assert set(settings["metric_params"]) == {m for ids in settings["methods"].values() for m in ids}
    model_only = stage_settings(cfg, "evaluate", dataset="shapes", model="baseline", method=MODEL_ROW)
    assert model_only["methods"] == {} and model_only["model_metrics"]
    metric_files = [p for p in targets(cfg)["metrics"] if p.startswith("data/metrics/shapes/baseline/")]
    assert len(metric_files) == len(settings["methods"]) + 1
    inputs = evaluate_inputs(cfg, "shapes", "baseline", "gradient")
    assert "data/explanations/shapes/baseline/gradient.npz" in inputs
    assert not any("explanations" in p for p in evaluate_inputs(cfg, "shapes", "baseline", MODEL_ROW))


def test_code_files_are_the_job_s_own_code():
    """A method's job depends on its own module and what it imports, not on its siblings; an evaluate
    job on the method and its metrics; every job on the CLI and the pipeline."""
    cfg = load_config({"profile": "smoke"})
    code_inputs = code_files
    lime = code_inputs(cfg, "explain", dataset="shapes", model="baseline", method="lime")
    assert "src/nnxai/methods/attribution/perturbation/lime.py" in lime
    assert "src/nnxai/methods/attribution/perturbation/maple.py" not in lime
    assert {"src/nnxai/cli.py", "src/nnxai/stages/explain.py", "src/nnxai/methods/base.py"} <= set(lime)
    assert not any("/metrics/" in p or "/training/trainer" in p for p in lime)
    train = code_inputs(cfg, "train", dataset="shapes", model="baseline")
    assert not any("/methods/" in p or "/metrics/" in p or "/explanations/" in p for p in train), train
    scored = code_inputs(cfg, "evaluate", dataset="shapes", model="baseline", method="lime")
    assert "src/nnxai/metrics/local_fidelity.py" in scored and "src/nnxai/metrics/concepts.py" not in scored
    assert "src/nnxai/methods/attribution/perturbation/lime.py" in scored
    model_only = code_inputs(cfg, "evaluate", dataset="shapes", model="baseline", method=MODEL_ROW)
    # the model's own row reads the model's metric (accuracy), none of the explanations' metrics
    assert not any("/metrics/" in p and not p.endswith(("base.py", "__init__.py", "accuracy.py")) for p in model_only)


def test_code_inputs_are_one_manifest_of_the_code_files_and_their_digests(tmp_path):
    """A job's code is one input: a sha256sum-style manifest of exactly its code files, rewritten only when
    a digest differs (so an unchanged tree leaves its mtime alone and reruns nothing)."""
    import hashlib

    from nnxai import workflow

    cfg = load_config({"profile": "smoke"})
    wild = {"dataset": "shapes", "model": "baseline", "method": "lime"}
    (relative,) = code_inputs(cfg, "explain", workdir=tmp_path, **wild)
    manifest = tmp_path / relative
    lines = [line.split("  ", 1) for line in manifest.read_text().splitlines()]
    assert [path for _, path in lines] == code_files(cfg, "explain", **wild)
    root = workflow.codedeps.SOURCE_ROOT.parent
    assert all(digest == hashlib.sha256((root / path).read_bytes()).hexdigest() for digest, path in lines)
    other = code_inputs(cfg, "explain", workdir=tmp_path, dataset="shapes", model="baseline", method="maple")
    assert other != [relative]
    stamp = manifest.stat().st_mtime_ns
    newest = max((root / path).stat().st_mtime_ns for _, path in lines)
    assert stamp == newest            # the code's time, not the writing's: outputs made since stay newer
    workflow._manifest.cache_clear()
    assert code_inputs(cfg, "explain", workdir=tmp_path, **wild) == [relative]
    assert manifest.stat().st_mtime_ns == stamp                   # same digests: not rewritten
    manifest.write_text("0" * 64 + "  src/nnxai/cli.py\n")         # as if the code had changed since
    workflow._manifest.cache_clear()
    code_inputs(cfg, "explain", workdir=tmp_path, **wild)
    assert [line.split("  ", 1) for line in manifest.read_text().splitlines()] == lines


def test_evaluating_one_method_names_what_the_config_runs_when_it_does_not_apply():
    cfg = load_config({"profile": "smoke"})
    one = stage_settings(cfg, "evaluate", dataset="shapes", model="baseline", method="gradient")
    assert list(one["methods"]) == ["gradient"] and not one["model_metrics"]
    with pytest.raises(ValueError, match="trepan.*not run on digits/baseline"):
        stage_settings(cfg, "evaluate", dataset="digits", model="baseline", method="trepan")


def test_explain_inputs_include_what_the_method_asks_for(monkeypatch):
    cfg = load_config({"profile": "smoke"})
    cls = registry.get("gradient")
    monkeypatch.setattr(cls, "required_inputs", classmethod(lambda c, p, d, m: [f"data/checkpoints/{d}/baseline_seed1.pt"]))
    assert "data/checkpoints/shapes/baseline_seed1.pt" in explain_inputs(cfg, "shapes", "baseline", "gradient")


def test_a_method_restricted_to_some_models_runs_only_there():
    cfg = load_config({"profile": "smoke"})
    assert registry.get("deepconsensus").only_models == frozenset({"baseline"})
    assert "deepconsensus" in methods_for(cfg, "shapes", "baseline")
    assert "deepconsensus" not in methods_for(cfg, "shapes", "baseline_shuffled_labels")
    assert "data/checkpoints/shapes/baseline_seed1.pt" in explain_inputs(cfg, "shapes", "baseline", "deepconsensus")


def test_dvc_yaml_is_what_the_code_generates():
    """dvc.yaml's code deps come from the same analysis as the Snakefile's code inputs (`nnxai dvc-yaml`)."""
    from nnxai import dvc_yaml

    assert (dvc_yaml.REPOSITORY / "dvc.yaml").read_text() == dvc_yaml.render(), "run `nnxai dvc-yaml --write`"
    text = dvc_yaml.render()
    for path in ("src/nnxai/stages/evaluate.py", "src/nnxai/methods/attribution/perturbation/lime.py",
                 "src/nnxai/metrics/pixel_flipping.py", "src/nnxai/report/table3.py", "src/nnxai/data/sets/shapes.py"):
        assert f"      - {path}\n" in text, path


def test_a_target_the_run_does_not_explain_is_refused_while_planning():
    """A cell asked for by path (``snakemake data/explanations/causal/baseline/cam.npz``) that the method does
    not apply to is refused by the input function, before any job, with what the method needs."""
    from nnxai.workflow import explain_inputs

    cfg = load_config({"profile": "smoke"})
    with pytest.raises(ValueError, match=r"cam does not run on causal/baseline: needs image data, causal is "
                                         r"tabular; this implementation of cam runs on CNNs with a "
                                         r"global-average-pool head and a linear output layer on image data"):
        explain_inputs(cfg, "causal", "baseline", "cam")
    with pytest.raises(ValueError, match=r"does not train causal/l1"):
        explain_inputs(cfg, "causal", "l1", "gradient")
    assert explain_inputs(cfg, "shapes", "baseline", "cam")[0] == "data/checkpoints/shapes/baseline.pt"


def test_seed_replicas_train_everywhere_and_run_their_methods_on_the_baselines_inputs():
    from nnxai.config import ConfigError, count_cap
    from nnxai.metrics.base import metrics

    cfg = load_config({})
    block = cfg["seed_replicas"]
    for dataset in cfg["datasets"]:
        models = targets(cfg)["checkpoints"]
        for k in block["seeds"]:
            assert f"data/checkpoints/{dataset}/baseline_seed{k}.pt" in models
            assert f"data/metrics/{dataset}/baseline_seed{k}/model.json" in targets(cfg)["metrics"]   # accuracy
    assert methods_for(cfg, "shapes", "baseline_seed1") == [m for m in methods_for(cfg, "shapes", "baseline")
                                                           if m in block["methods"]]
    assert "digits" not in block["datasets"] and methods_for(cfg, "digits", "baseline_seed1") == []
    scored = set(metrics_for(cfg, "shapes", "baseline_seed1", "gradient"))
    assert scored and not {m for m in scored if metrics()[m].reexplains or m == "roar"}
    assert scored <= set(metrics_for(cfg, "shapes", "baseline", "gradient"))
    assert count_cap(cfg, "shapes", "baseline_seed1") == count_cap(cfg, "shapes", "baseline")   # the same inputs
    with pytest.raises(ConfigError, match="seed_replicas"):
        load_config({"seed_replicas": {"seeds": [0], "datasets": None, "methods": None}})
    with pytest.raises(ConfigError, match="seed_replicas"):
        load_config({"seed_replicas": {"seeds": [1], "datasets": None, "methods": ["not_a_method"]}})


def test_expo_s_claim_is_scored_by_the_re_running_metrics_on_its_network_only():
    """``variant_reexplain_methods: {expo: [expo]}``: on the ExpO network, on every data set it trains on,
    ExpO's own local model gets the metrics that re-run the method (its catalogue metric stability [120]),
    while ``variant_reexplain_datasets: []`` keeps them off every other method and network; the baselines
    keep them all.  Listing LIME there gives it continuity and the rest on the ExpO network too."""
    from nnxai.config import models_for
    from nnxai.metrics.base import metrics

    cfg = load_config({})
    assert cfg["variant_reexplain_methods"] == {"expo": ["expo"]}
    assert cfg["variant_reexplain_datasets"] == []
    reexplaining = {m for m, cls in metrics().items() if cls.reexplains}
    expo_sets = [d for d in cfg["datasets"] if "expo" in models_for(cfg, d)]
    assert {"shapes", "planted"} <= set(expo_sets)
    for dataset in expo_sets:
        assert "stability" in metrics_for(cfg, dataset, "expo", "expo")
        assert "local_fidelity" in metrics_for(cfg, dataset, "expo", "lime")
        assert not reexplaining & set(metrics_for(cfg, dataset, "expo", "lime"))
        assert not reexplaining & set(metrics_for(cfg, dataset, "expo", "gradient"))
        assert not reexplaining & set(metrics_for(cfg, dataset, "l1", "lime"))
        assert "continuity" in metrics_for(cfg, dataset, "baseline", "lime")
    wider = load_config({"variant_reexplain_methods": {"expo": ["expo", "lime", "maple"]}})
    for method in ("lime", "maple"):
        assert {"continuity", "sanity_model_randomisation"} <= set(metrics_for(wider, "shapes", "expo", method))
    none = load_config({"variant_reexplain_methods": {"expo": []}})
    assert "stability" not in metrics_for(none, "shapes", "expo", "expo")
    assert "continuity" not in metrics_for(none, "shapes", "expo", "lime")
