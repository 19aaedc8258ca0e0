"""The report registry: every table and figure registered once, by its writer; the rest derived from it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nnxai import report, workflow
from nnxai.report import REPORT_ITEMS, report_item


def test_tables_and_figures_come_from_the_registry():
    assert set(report.TABLES) == {"table1", "table2", "table3", "table4", "table_comparison", "active_summary",
                                  "unit_agreement_summary", "concept_tests", "survey_papers"}
    assert set(report.FIGURES) == {"taxonomy3d", "metrics_heatmap", "metrics_overview", "perturbation_curves",
                                   "runtime", "active_vs_baseline", "prototypes", "rule_extractors",
                                   "unit_agreement", "activation_max", "deconv_top9", "influential_examples",
                                   "prototypes_criticisms", "net2vec_iou", "neuron_ranking_ablation", "filter_car_pruning", "mimic_fidelity"}
    assert list(workflow.TABLES) == list(report.TABLES) and list(workflow.FIGURES) == list(report.FIGURES)
    assert list(workflow.DOCUMENTS) == ["results"] and REPORT_ITEMS["results"].formats == ("md", "tex")
    for name, writer in {**report.TABLES, **report.FIGURES}.items():
        item = REPORT_ITEMS[name]
        assert item.writer is writer is getattr(report, f"write_{name}")
        assert item.formats == (("md", "tex") if item.kind == "table" else workflow.FIGURE_FORMATS)
    assert {n for n, item in REPORT_ITEMS.items() if item.needs_workdir} == {
        "table2", "table_comparison", "metrics_heatmap", "perturbation_curves", "runtime", "active_vs_baseline",
        "active_summary", "prototypes", "rule_extractors", "unit_agreement", "unit_agreement_summary",
        "activation_max", "deconv_top9", "influential_examples", "prototypes_criticisms", "concept_tests",
        "results", "metrics_overview", "net2vec_iou", "neuron_ranking_ablation", "filter_car_pruning", "mimic_fidelity"}


def test_a_registered_item_joins_the_targets():
    @report_item("toy_table", kind="table")
    def write_toy_table(out_dir):
        return []

    try:
        assert "toy_table" in workflow.TABLES and REPORT_ITEMS["toy_table"].writer is write_toy_table
        cfg = {"datasets": [], "models": {}}
        assert "paper/tables/toy_table.tex" in workflow.targets(cfg)["tables"]
    finally:
        REPORT_ITEMS.unregister("toy_table")
    assert "toy_table" not in workflow.TABLES
    with pytest.raises(ValueError, match="'chart'"):
        report_item("toy", kind="chart")


def test_importing_the_workflow_does_not_import_the_writers():
    code = ("import sys, nnxai.workflow, nnxai.cli; nnxai.cli.build_parser(); "
            "print(sorted(m for m in ('matplotlib', 'plotly', 'nnxai.report.table1') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
