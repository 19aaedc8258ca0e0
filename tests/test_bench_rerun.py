"""benchmarks/rerun.py without running the workflow: its 10,000-job config is a valid config of that many
jobs, and it reads which jobs ran and what Snakemake planned as the Snakefile names them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from nnxai import workflow as wf
from nnxai.config import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rerun():
    spec = importlib.util.spec_from_file_location("bench_rerun", ROOT / "benchmarks" / "rerun.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_many_jobs_config_is_valid_and_large_enough(rerun):
    overrides, k, counts = rerun.many_jobs_config("smoke", 10_000)
    cfg = load_config(overrides)                                        # validated as the Snakefile does
    assert sum(counts.values()) >= 10_000
    assert sum(rerun.planned_jobs(cfg).values()) == sum(counts.values())
    fewer = {**overrides, "models": {kind: [m for m in models if m != f"baseline_seed{k}"]
                                     for kind, models in overrides["models"].items()}}
    assert sum(rerun.planned_jobs(load_config(fewer)).values()) < 10_000   # the fewest seeds that reach it


def test_planned_jobs_cover_the_targets(rerun):
    cfg = load_config({"profile": "smoke"})
    counts, targets = rerun.planned_jobs(cfg), wf.targets(cfg)
    assert counts["evaluate_explanation"] + counts["evaluate_model"] == len(targets["metrics"])
    assert counts["explain_attribution"] + counts["explain_structured"] == len(targets["explanations"])
    assert counts["prepare_data"] == len(cfg["datasets"])
    # DeepConsensus' members are trained although no model list names them
    members = {f"data/checkpoints/{d}/baseline_seed{k}.pt" for d, _, x in wf.experiment_cells(cfg) if x == "deepconsensus"
               for k in cfg["method_params"]["deepconsensus"]["seeds"]}       # usually seed replicas already
    assert counts["train_model"] == len(set(targets["checkpoints"]) | members)
    assert counts["make_table"] * 2 == len(targets["tables"]) and counts["all"] == 1


def test_outputs_map_to_their_rules(rerun):
    rule = rerun.rule_of
    assert rule("data/prepared/shapes/meta.json") == "prepare_data"
    assert rule("data/prepared/shapes/train.npz") is None               # the same job as meta.json
    assert rule("data/checkpoints/shapes/baseline.pt") == "train_model"
    assert rule("data/checkpoints/shapes/baseline.json") is None
    assert rule("data/explanations/shapes/baseline/occlusion.npz") == "explain_attribution"
    assert rule("data/explanations/shapes/baseline/trepan.json") == "explain_structured"
    assert rule("data/metrics/shapes/baseline/occlusion.json") == "evaluate_explanation"
    assert rule("data/metrics/shapes/baseline/model.json") == "evaluate_model"
    assert rule("data/metrics/all.csv") == "aggregate_metrics"
    assert rule("data/metrics/summary.json") is None
    assert rule("paper/tables/table2.md") == "make_table" and rule("paper/tables/table2.tex") is None
    assert rule("paper/figures/taxonomy3d.png") == "make_figure" and rule("paper/figures/taxonomy3d.pdf") is None
    ran = rerun.jobs_that_ran({"data/metrics/all.csv": 1, "paper/tables/table1.md": 5},
                              {"data/metrics/all.csv": 2, "paper/tables/table1.md": 5, "paper/tables/table2.md": 3})
    assert ran == {"aggregate_metrics": ["data/metrics/all.csv"], "make_table": ["paper/tables/table2.md"]}


def test_job_stats_table_is_parsed(rerun):
    output = ("Building DAG of jobs...\nJob stats:\njob                    count\n"
              "-------------------  -------\nall                          1\nexplain_attribution          2\n"
              "total                        3\n\nReasons:\n    (check individual jobs above for details)\n")
    assert rerun.job_stats(output) == {"all": 1, "explain_attribution": 2, "total": 3}
    assert rerun.job_stats("Building DAG of jobs...\nNothing to be done (all requested files are present).") is None


def test_change_spec(rerun):
    cfg = load_config({"profile": "smoke"})
    window = cfg["method_params"]["occlusion"]["window"]
    assert rerun.parse_change("occlusion.window", cfg) == ("occlusion", "window", window, window + 2)
    assert rerun.parse_change("occlusion.fill=zero", cfg)[3] == "zero"
    with pytest.raises(SystemExit, match="no method_params.occlusion.nope"):
        rerun.parse_change("occlusion.nope", cfg)
