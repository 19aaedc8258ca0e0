"""Figure: the global rule extractors on the MONK's problems (and on every other set with a planted rule):
rule-set size against fidelity to the network, and whether the planted rule was recovered.

One panel per data set with a planted rule (:attr:`nnxai.data.base.Dataset.planted_rule`: ``monks1``,
``monks2``, ``monks3``, ``shapes``); one point per (global rule method, plain model: ReLU ``baseline``, ``baseline_sigmoid``): x = number of rules
(``rule_size``; a tree's leaves), y = ``fidelity`` on the test split (MONK: the whole 432-robot space), with
its 95 % interval (x on a symmetric log scale: a method that extracted no rule stands at 0); a filled marker where ``rule_recovery`` is 1 (the rules classify the planted rule's whole
instance space as the rule does), hollow otherwise.  Colours are the methods (registry order), marker
shapes the models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nnxai import registry
from nnxai.data import DATASETS
from nnxai.report._figure import figure_style, new_figure, note, save_figure
from nnxai.report._items import report_item
from nnxai.report._results import first_seen, method_order, read_results
from nnxai.taxonomy import ExplanationType, Scope

NAME = "rule_extractors"
#: The models compared: the plain networks (the regularised variants answer another question).
MODELS = ("baseline", "baseline_sigmoid")
CAPTION = ("Global rule extractors on the data sets whose labelling rule is planted (the MONK's problems of "
           "Thrun et al. 1991; shapes): number of rules against fidelity to the network (95 % interval), filled "
           "where the extracted rules are the planted rule on its whole instance space (rule_recovery = 1).")


def _global_rule_method(method_id: str) -> bool:
    try:
        spec = registry.spec(method_id)
    except KeyError:
        return False
    return spec.explanation_type is ExplanationType.RULE and Scope.GLOBAL in spec.scopes


def rule_points(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, model, method) of a global rule method on a set with a planted rule:
    ``rules``, ``fidelity``, ``fidelity_low``, ``fidelity_high``, ``recovered`` (bool; NaN-safe)."""
    planted = {d for d in frame["dataset"].unique() if d in DATASETS and DATASETS[d].planted_rule is not None}
    rows = frame[frame["dataset"].isin(planted) & frame["model"].isin(MODELS) & frame["method"].map(_global_rule_method)]
    keyed = rows.set_index(["dataset", "model", "method", "metric"])
    out = []
    for (dataset, model, method), _ in rows.groupby(["dataset", "model", "method"], sort=False):
        def get(metric, column="value"):
            try:
                value = keyed.loc[(dataset, model, method, metric), column]
            except KeyError:
                return np.nan
            value = value.iloc[0] if isinstance(value, pd.Series) else value
            return pd.to_numeric(value, errors="coerce")
        fidelity = get("fidelity")
        if np.isnan(fidelity):
            continue
        out.append({"dataset": dataset, "model": model, "method": method, "rules": get("rule_size"),
                    "leaves": get("n_leaves"), "fidelity": fidelity, "fidelity_low": get("fidelity", "ci_low"),
                    "fidelity_high": get("fidelity", "ci_high"), "recovered": get("rule_recovery") == 1.0})
    points = pd.DataFrame(out, columns=["dataset", "model", "method", "rules", "leaves", "fidelity",
                                        "fidelity_low", "fidelity_high", "recovered"])
    points["rules"] = points["rules"].fillna(points["leaves"])
    order = {m: i for i, m in enumerate(method_order(points["method"]))}
    return points.sort_values(["dataset", "method"], key=lambda s: s.map(order) if s.name == "method" else s,
                              kind="stable").reset_index(drop=True)


@report_item("rule_extractors", kind="figure")
def write_rule_extractors(out_dir: Path, workdir: Path = Path(".")) -> list[Path]:
    """Draw ``rule_extractors.{pdf,png,html}`` from ``<workdir>/data/metrics/all.csv``."""
    import seaborn as sns

    points = rule_points(read_results(workdir))
    datasets = first_seen(points["dataset"]) or ["monks1"]
    methods, models = first_seen(points["method"]), first_seen(points["model"])
    palette = "colorblind" if len(methods) <= 10 else "husl"      # one distinct colour per method
    colours = dict(zip(methods, sns.color_palette(palette, max(len(methods), 1))))
    markers = dict(zip(models, "osD^v<>"))
    with figure_style():
        fig = new_figure(3.2 * len(datasets) + 1.8, 3.4)
        axes = fig.subplots(1, len(datasets), sharey=True, squeeze=False)[0]
        for ax, dataset in zip(axes, datasets):
            panel = points[points["dataset"] == dataset]
            if panel.empty:
                note(ax, "no global rule extractor ran on a set with a planted rule")
                continue
            for row in panel.itertuples():
                colour = colours[row.method]
                low, high = row.fidelity - row.fidelity_low, row.fidelity_high - row.fidelity
                if np.isfinite(low) and np.isfinite(high):
                    ax.errorbar(row.rules, row.fidelity, yerr=[[max(low, 0)], [max(high, 0)]], color=colour,
                                lw=0.8, capsize=2, zorder=1)
                ax.scatter(row.rules, row.fidelity, s=42, marker=markers[row.model], edgecolors=colour,
                           facecolors=colour if row.recovered else "white", linewidths=1.3, zorder=2)
            ax.set_xscale("symlog", linthresh=1.0)     # a method that extracted no rule sits at 0
            ax.set_xlim(left=-0.3)
            ax.set_title(dataset)
            ax.set_xlabel("rules (symmetric log scale)")
        axes[0].set_ylabel("fidelity to the network")
        from matplotlib.lines import Line2D

        handles = ([Line2D([], [], ls="", marker="o", color=colours[m], label=m) for m in methods]
                   + [Line2D([], [], ls="", marker=markers[m], color="0.3", mfc="white", label=m) for m in models]
                   + [Line2D([], [], ls="", marker="o", color="0.3", label="planted rule recovered"),
                      Line2D([], [], ls="", marker="o", color="0.3", mfc="white", label="not recovered")])
        fig.legend(handles=handles, loc="outside right center", frameon=False, fontsize=7)
        fig.suptitle("Global rule extraction against planted rules")
        return save_figure(fig, out_dir, NAME, CAPTION, points)
