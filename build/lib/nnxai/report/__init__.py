"""The report: the survey's tables and figures, generated from the registry and from measurements.

One module per table or figure, each with one public ``write_<name>(out_dir) -> list[Path]`` that writes
its files atomically and returns their paths (the showyourwork habit of STYLE.md: a figure names the
script that makes it):

- :mod:`~nnxai.report.table1` — Table I, interpretable "terms" used in practice (survey content);
- :mod:`~nnxai.report.table2` — Table II, example explanations, filled with this run's real outputs;
- :mod:`~nnxai.report.table3` — Table III, the taxonomy overview, from the registry;
- :mod:`~nnxai.report.table4` — Table IV, gradient-based attribution formulas, checked numerically;
- :mod:`~nnxai.report.taxonomy3d` — Fig. 2, the 3D taxonomy (PDF, PNG and interactive HTML);
- :mod:`~nnxai.report.table_comparison` — the companion survey's feature-importance comparison
  (its Table 1, :mod:`~nnxai.report.companion_table`), regenerated for every attribution method;
- :mod:`~nnxai.report.metrics_heatmap`, :mod:`~nnxai.report.perturbation_curves`,
  :mod:`~nnxai.report.runtime` — the results figures, drawn from ``data/metrics/all.csv``
  (PDF, PNG and an HTML page with the values).

:data:`TABLES` and :data:`FIGURES` map each output's name to its writer, for the CLI and the workflow.
"""

from __future__ import annotations

from nnxai.report._format import latex_escape
from nnxai.report.metrics_heatmap import write_metrics_heatmap
from nnxai.report.perturbation_curves import write_perturbation_curves
from nnxai.report.runtime import write_runtime
from nnxai.report.table1 import write_table1
from nnxai.report.table2 import write_table2
from nnxai.report.table3 import write_table3
from nnxai.report.table4 import write_table4
from nnxai.report.table_comparison import write_table_comparison
from nnxai.report.taxonomy3d import write_taxonomy3d

TABLES = {
    "table1": write_table1,
    "table2": write_table2,
    "table3": write_table3,
    "table4": write_table4,
    "table_comparison": write_table_comparison,
}

FIGURES = {
    "taxonomy3d": write_taxonomy3d,
    "metrics_heatmap": write_metrics_heatmap,
    "perturbation_curves": write_perturbation_curves,
    "runtime": write_runtime,
}

__all__ = ["FIGURES", "TABLES", "latex_escape", "write_metrics_heatmap", "write_perturbation_curves",
           "write_runtime", "write_table1", "write_table2", "write_table3", "write_table4",
           "write_table_comparison", "write_taxonomy3d"]
