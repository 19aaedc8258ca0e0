"""Does an actively regularised network give better passive explanations than the baseline? (issue 11)

Every passive method runs on every trained variant (the baseline, the sparsity baselines ``l1``/``l2`` and
the networks of the active methods, survey Sec. IV), and every metric that judges it scores it.  This
module puts each variant's score beside the baseline's, cell by cell (data set, method, metric):

- figure ``active_vs_baseline``: one panel per metric (bare metric ids, no sub-scores, so it stays
  readable), the baseline's value on the x axis and the variant's on the y axis, one dot per (method,
  variant) with the 95% bootstrap intervals over the explained inputs as error bars; points on the side of
  the diagonal that the metric's direction calls better are better explanations on that variant;
- table ``active_summary``: per data set and variant, how many cells are better, worse or
  indistinguishable — better or worse only where the two intervals do not overlap (a conservative test:
  non-overlapping 95% intervals), plus the variant's accuracy beside the baseline's.

The variants explain a subset of the baseline's inputs (``variant_n_explain``), so their intervals are
wider; a cell without an interval on either side (a value that is not a mean over inputs) is not judged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nnxai.io import atomic_write_text
from nnxai.report._figure import figure_style, new_figure, note, save_figure
from nnxai.report._format import latex_escape
from nnxai.report._items import report_item
from nnxai.report._results import MODEL_ROWS, first_seen, read_results

BASELINE = "baseline"
#: Models compared with nothing: the shuffled-label control and the sigmoid twin answer other questions.
NOT_COMPARED = ("baseline_shuffled_labels", "baseline_sigmoid")
FIGURE = "active_vs_baseline"
TABLE = "active_summary"
CAPTION = ("Each passive method's score on each trained variant (y) against the same method's score on the "
           "baseline network (x), one panel per metric, with 95% bootstrap intervals over the explained "
           "inputs; the shaded side of the diagonal is better by the metric's direction.")
TABLE_CAPTION = ("Passive explanations on each regularised variant against the baseline: cells (method × "
                 "metric) whose 95% intervals do not overlap, better or worse by the metric's direction, "
                 "and the variant's test accuracy beside the baseline's (the price of the intervention).")


def _directions() -> dict[str, bool | None]:
    from nnxai.metrics.base import metrics

    return {m: cls.higher_is_better for m, cls in metrics().items()}


def paired_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows ``dataset, variant, method, metric, base, base_low, base_high, value, low, high, better`` for
    every cell scored on the baseline and on a variant, bare metric ids with a declared direction only.
    ``better``: +1 / -1 where the intervals do not overlap and the variant is better / worse, 0 otherwise,
    NaN where an interval is missing."""
    directions = _directions()
    rows = frame[(frame["method"] != MODEL_ROWS) & ~frame["metric"].str.contains(".", regex=False)].copy()
    rows = rows[rows["metric"].map(lambda m: directions.get(m) is not None)]
    for column in ("ci_low", "ci_high"):
        rows[column] = pd.to_numeric(rows.get(column, pd.Series(dtype=str)).replace({"": "nan"}), errors="coerce")
    keys = ["dataset", "method", "metric"]
    base = rows[rows["model"] == BASELINE].groupby(keys)[["value", "ci_low", "ci_high"]].mean()
    base.columns = ["base", "base_low", "base_high"]
    others = rows[(rows["model"] != BASELINE) & ~rows["model"].isin(NOT_COMPARED)
                  & ~rows["model"].str.startswith("baseline_seed")]
    other = others.groupby([*keys, "model"])[["value", "ci_low", "ci_high"]].mean().reset_index()
    other = other.rename(columns={"model": "variant", "ci_low": "low", "ci_high": "high"})
    out = other.join(base, on=keys, how="inner")
    higher = out["metric"].map(directions).astype(bool)
    separate_up = out["low"] > out["base_high"]
    separate_down = out["high"] < out["base_low"]
    known = out[["low", "high", "base_low", "base_high"]].notna().all(axis=1)
    sign = np.where(separate_up, 1, np.where(separate_down, -1, 0)) * np.where(higher, 1, -1)
    out["better"] = np.where(known, sign, np.nan)
    return out[["dataset", "variant", "method", "metric", "base", "base_low", "base_high", "value", "low", "high",
                "better"]].reset_index(drop=True)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per data set and variant: cells better / worse / indistinguishable, and the two accuracies."""
    cells = paired_cells(frame)
    acc = frame[(frame["method"] == MODEL_ROWS) & (frame["metric"] == "accuracy")]
    accuracy = acc.groupby(["dataset", "model"])["value"].mean()
    rows = []
    for (dataset, variant), group in cells.groupby(["dataset", "variant"], sort=False):
        judged = group["better"].dropna()
        rows.append({"dataset": dataset, "variant": variant, "cells": len(group), "judged": len(judged),
                     "better": int((judged > 0).sum()), "worse": int((judged < 0).sum()),
                     "same": int((judged == 0).sum()),
                     "accuracy": accuracy.get((dataset, variant), np.nan),
                     "baseline_accuracy": accuracy.get((dataset, BASELINE), np.nan)})
    return pd.DataFrame(rows, columns=["dataset", "variant", "cells", "judged", "better", "worse", "same",
                                       "accuracy", "baseline_accuracy"])


@report_item(FIGURE, kind="figure")
def write_active_vs_baseline(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Draw ``active_vs_baseline.{pdf,png,html}`` from ``<workdir>/data/metrics/all.csv``."""
    import seaborn as sns

    cells = paired_cells(read_results(workdir))
    directions = _directions()
    metrics_drawn = first_seen(cells["metric"])
    variants = first_seen(cells["variant"])
    n = max(len(metrics_drawn), 1)
    ncols = min(4, n)
    nrows = int(np.ceil(n / ncols))
    palette = dict(zip(variants, sns.color_palette("colorblind", max(len(variants), 1))))
    with figure_style():
        fig = new_figure(2.6 * ncols + 1.6, 2.4 * nrows + 0.6)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        if cells.empty:
            note(axes[0, 0], "no variant scored beside the baseline in data/metrics/all.csv yet")
        for ax, metric in zip(axes.flat, metrics_drawn):
            part = cells[cells["metric"] == metric]
            lo = np.nanmin(part[["base", "value", "base_low", "low"]].to_numpy(dtype=float))
            hi = np.nanmax(part[["base", "value", "base_high", "high"]].to_numpy(dtype=float))
            pad = 0.05 * (hi - lo or 1.0)
            lo, hi = lo - pad, hi + pad
            ax.plot([lo, hi], [lo, hi], color="#888888", lw=0.8, zorder=1)
            corner = [hi, hi] if directions[metric] else [lo, lo]
            ax.fill_between([lo, hi], [lo, hi], corner, color="#2ca02c", alpha=0.07, zorder=0)
            for variant, group in part.groupby("variant", sort=False):
                xerr = np.abs(np.vstack([group["base"] - group["base_low"], group["base_high"] - group["base"]]))
                yerr = np.abs(np.vstack([group["value"] - group["low"], group["high"] - group["value"]]))
                ax.errorbar(group["base"], group["value"], xerr=np.nan_to_num(xerr), yerr=np.nan_to_num(yerr),
                            fmt="o", ms=2.5, lw=0.5, color=palette[variant], label=variant, zorder=2)
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            arrow = "↑" if directions[metric] else "↓"
            ax.set_title(f"{metric} ({arrow} better)")
            ax.set_xlabel("baseline")
            ax.set_ylabel("variant")
        for ax in list(axes.flat)[len(metrics_drawn):]:
            ax.set_axis_off()
        if variants:
            handles = [axes.flat[0].plot([], [], "o", color=palette[v], label=v)[0] for v in variants]
            fig.legend(handles=handles, labels=variants, loc="outside right upper", frameon=False, title="variant")
        fig.suptitle("Passive explanations on each regularised network against the baseline")
        return save_figure(fig, out_dir, FIGURE, CAPTION, cells)


@report_item(TABLE, kind="table")
def write_active_summary(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Write ``active_summary.{md,tex}`` from ``<workdir>/data/metrics/all.csv``."""
    table = summary(read_results(workdir))
    fmt = lambda v: "—" if pd.isna(v) else f"{v:.3f}"
    head = ["data set", "variant", "accuracy (baseline)", "better", "worse", "indistinguishable", "not judged"]
    body = [[r.dataset, r.variant, f"{fmt(r.accuracy)} ({fmt(r.baseline_accuracy)})", str(r.better), str(r.worse),
             str(r.same), str(r.cells - r.judged)] for r in table.itertuples()]
    md = [f"**{TABLE}.** {TABLE_CAPTION}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(row) + " |" for row in body] or ["| " + " | ".join(["—"] * len(head)) + " |"]
    tex = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{latex_escape(TABLE_CAPTION)}}}",
           rf"\label{{tab:{TABLE}}}", r"\begin{tabular}{ll" + "r" * (len(head) - 2) + "}", r"\toprule",
           " & ".join(latex_escape(h) for h in head) + r" \\", r"\midrule"]
    tex += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in body]
    tex += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    out_dir = Path(out_dir)
    return [atomic_write_text(out_dir / f"{TABLE}.md", "\n".join(md) + "\n"),
            atomic_write_text(out_dir / f"{TABLE}.tex", "\n".join(tex) + "\n")]
