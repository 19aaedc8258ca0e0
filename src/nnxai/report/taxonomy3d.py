"""Fig. 2 of the survey: the distribution of the interpretability papers in the 3D taxonomy.

Zhang, Tiňo, Leonardis & Tang (2021), Section II, Fig. 2 (a 2D snapshot of an interactive 3D view):
x is dimension 1 (engagement: passive, active), y dimension 2 (explanation type, rule ... by example),
z dimension 3 (scope, local ... global), as in the survey's Fig. 1.  The points are the survey's own paper
space (:mod:`nnxai.report.survey_papers`): every paper that Table III or the text of Section III places in
the taxonomy is one point in each cell the survey gives it, labelled with its reference number; a paper is
never twice in one cell.  Points of one cell are spread deterministically on a small square grid around the
cell centre, in the plane that faces the static figure's camera, so none overlap.  A point is coloured when
a method of this project that cites the paper, with the cell's engagement and explanation type, is
implemented (read from the registry when the figure is drawn), grey otherwise; a triangle marks a paper
that only the text of Section III places (not Table III).

Outputs: ``taxonomy3d.pdf`` and ``taxonomy3d.png`` (matplotlib, reproducible bytes) and
``taxonomy3d.html`` (plotly, self-contained: plotly.js is embedded, so it works offline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nnxai import registry
from nnxai.io import atomic_open, atomic_write_text
from nnxai.report import survey_papers
from nnxai.report._items import report_item
from nnxai.report.survey_papers import SurveyPaper
from nnxai.taxonomy import Engagement, ExplanationType, MethodSpec, Scope

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

ELEVATION, AZIMUTH = 25.0, -40.0  #: camera of the static figure, degrees
SPACING = (0.19, 0.16)  #: (horizontal, vertical) step between the points of one cell, in cell units
DPI = 200
COLOUR_DONE, COLOUR_TODO = "#c0392b", "#a6a6a6"
# Reproducible files: no creation date in the PDF, no version string in the PNG.
_METADATA = {"pdf": {"CreationDate": None, "ModDate": None}, "png": {"Software": None}}


@dataclass(frozen=True)
class Point:
    """One paper of Fig. 2 in one of the cells the survey gives it."""

    ref: int
    name: str
    engagement: Engagement
    explanation_type: ExplanationType
    scope: Scope
    source: str  #: where the survey places it ("Table III", "Sec. III-D text", ...)
    method_ids: tuple[str, ...]  #: implemented methods citing it, with the cell's engagement and type
    catalogue_ids: tuple[str, ...]  #: every registered method citing it, with that engagement and type
    x: float
    y: float
    z: float

    @property
    def implemented(self) -> bool:
        """Whether this project runs a method of this paper in this cell."""
        return bool(self.method_ids)

    @property
    def from_table3(self) -> bool:
        return self.source == survey_papers.TABLE3

    @property
    def cell(self) -> survey_papers.Cell:
        return (self.engagement, self.explanation_type, self.scope)

    @property
    def label(self) -> str:
        """The point's label: the survey's reference number."""
        return str(self.ref)

    @property
    def reference(self) -> str:
        return f"[{self.ref}]"


def _grid_offsets(n: int) -> list[tuple[float, float]]:
    """``n`` offsets (right, up) on a centred grid about twice as tall as wide, row by row from the top
    left: cells are further apart vertically (scope) than horizontally on the static figure."""
    cols = math.ceil(math.sqrt(n / 2))
    rows = math.ceil(n / cols)
    step_right, step_up = SPACING
    return [((k % cols - (cols - 1) / 2) * step_right, ((rows - 1) / 2 - k // cols) * step_up)
            for k in range(n)]


def _screen_axes(azimuth: float = AZIMUTH) -> tuple[np.ndarray, np.ndarray]:
    """Data-space directions of the static camera's screen right and screen up (isotropic data box)."""
    a = math.radians(azimuth)
    return np.array([-math.sin(a), math.cos(a), 0.0]), np.array([0.0, 0.0, 1.0])


def points(specs: list[MethodSpec] | None = None,
           entries: tuple[SurveyPaper, ...] | None = None) -> list[Point]:
    """Every paper of the survey's taxonomy as one point per cell the survey gives it.

    Parameters
    ----------
    specs : list of MethodSpec, optional
        The registered methods whose implementations colour the points (default: the whole registry).
    entries : tuple of SurveyPaper, optional
        The papers (default: :data:`nnxai.report.survey_papers.PAPERS`).

    Returns
    -------
    list of Point
        ``Σ len(cells)`` points over the papers, cell by cell in the order the cells first occur, papers in
        :data:`~nnxai.report.survey_papers.PAPERS` order within a cell, each paper at most once per cell;
        within a cell the points sit on a grid of step :data:`SPACING` around the centre ``(engagement
        index, type rank, scope rank)``, a layout that depends on the papers' order only.
    """
    specs = registry.specs() if specs is None else specs
    entries = survey_papers.PAPERS if entries is None else entries
    by_cell: dict[survey_papers.Cell, list[SurveyPaper]] = {}
    for entry in entries:
        for cell in entry.cells:  # a paper named twice in a cell (Table III's [72]) is one point
            if all(other.ref != entry.ref for other in by_cell.setdefault(cell, [])):
                by_cell[cell].append(entry)
    right, up = _screen_axes()
    engagements = list(Engagement)
    out = []
    for (engagement, etype, scope), cell_papers in by_cell.items():
        centre = np.array([engagements.index(engagement), etype.rank, scope.rank], dtype=float)
        for entry, (du, dv) in zip(cell_papers, _grid_offsets(len(cell_papers))):
            x, y, z = (centre + du * right + dv * up).round(6)
            cited = survey_papers.method_ids(entry, (engagement, etype, scope), specs)
            out.append(Point(entry.ref, entry.name, engagement, etype, scope, entry.source,
                             tuple(m for m in cited if registry.is_implemented(m)), tuple(cited),
                             float(x), float(y), float(z)))
    return out


# ----------------------------------------------------------------------------- static figure
_GROUPS = (  # (implemented, placed by Table III) → legend text, marker
    ((True, True), "run in nnxai (Table III)", "o"),
    ((True, False), "run in nnxai (placed by the text of Sec. III)", "^"),
    ((False, True), "not run in nnxai (Table III)", "o"),
    ((False, False), "not run in nnxai (placed by the text of Sec. III)", "^"),
)


def _summary(pts: list[Point]) -> str:
    """``"23 of 71 points (19 of 67 papers) run in nnxai"``."""
    papers = {p.ref for p in pts}
    run = {p.ref for p in pts if p.implemented}
    return (f"{sum(p.implemented for p in pts)} of {len(pts)} points ({len(run)} of {len(papers)} papers) "
            "run in nnxai")


def _axis_ticks(ax) -> None:
    ax.set_xticks(range(len(Engagement)), [e.value.capitalize() for e in Engagement])
    ax.set_yticks(range(len(ExplanationType)), [t.label.replace(" ", "\n") for t in ExplanationType])
    ax.set_zticks(range(len(Scope)), [s.label for s in Scope])
    ax.set_xlim(-0.5, len(Engagement) - 0.5)
    ax.set_ylim(-0.5, len(ExplanationType) - 0.5)
    ax.set_zlim(-0.5, len(Scope) - 0.5)
    ax.set_box_aspect((len(Engagement), len(ExplanationType), len(Scope)), zoom=0.95)
    ax.set_xlabel("Dimension 1: engagement", labelpad=8)
    ax.set_ylabel("Dimension 2: explanation type", labelpad=22)
    ax.set_zlabel("Dimension 3: scope", labelpad=14)
    ax.tick_params(labelsize=9)


def _drop_lines(ax, pts: list[Point]) -> None:
    """A dotted line from below each cell's points to the floor, so the cell's (engagement, type) reads."""
    lowest: dict[tuple[int, int, int], float] = {}
    for p in pts:
        cell = (list(Engagement).index(p.engagement), p.explanation_type.rank, p.scope.rank)
        lowest[cell] = min(lowest.get(cell, math.inf), p.z)
    for (x, y, _), z in sorted(lowest.items()):
        ax.plot([x, x], [y, y], [-0.5, z - 0.06], color="#9a9a9a", lw=0.6, ls=":", zorder=1)
        ax.scatter([x], [y], [-0.5], marker="s", s=8, c="#9a9a9a", depthshade=False, zorder=1)


def _static_figure(pts: list[Point]) -> Figure:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(10, 8.5))
    ax = fig.add_subplot(projection="3d", computed_zorder=False)
    ax.view_init(elev=ELEVATION, azim=AZIMUTH)
    right, _ = _screen_axes()
    _drop_lines(ax, pts)
    for (done, table3), text, marker in _GROUPS:
        group = [p for p in pts if (p.implemented, p.from_table3) == (done, table3)]
        if group:
            ax.scatter([p.x for p in group], [p.y for p in group], [p.z for p in group], marker=marker,
                       s=22 if done else 14, c=COLOUR_DONE if done else COLOUR_TODO, depthshade=False,
                       edgecolors="black" if done else "none", linewidths=0.4, zorder=3 if done else 2)
    for p in pts:
        pos = np.array([p.x, p.y, p.z]) + 0.028 * right
        ax.text(*pos, p.label, fontsize=5.5, ha="left", va="center", zorder=4,
                color="black" if p.implemented else "#555555", fontweight="bold" if p.implemented else None)
    _axis_ticks(ax)
    handles = [Line2D([], [], ls="", marker=marker, ms=6 if done else 5, mec="black" if done else "none",
                      mfc=COLOUR_DONE if done else COLOUR_TODO, label=text)
               for (done, _), text, marker in _GROUPS]
    fig.legend(handles=handles, loc="upper left", fontsize=8, frameon=False, bbox_to_anchor=(0.04, 0.93))
    fig.suptitle("The interpretability papers in the survey's 3D taxonomy (Fig. 2), one point per paper and cell",
                 fontsize=11, y=0.98)
    fig.text(0.5, 0.02, f"{_summary(pts)}; labels are the survey's reference numbers.\nColoured: an implemented "
             "method of nnxai cites the paper, with the cell's engagement and explanation type.", ha="center",
             fontsize=8)
    fig.subplots_adjust(left=0.0, right=1.0, bottom=0.05, top=0.97)
    return fig


# ----------------------------------------------------------------------------- interactive figure
def _hover(p: Point) -> str:
    pending = [m for m in p.catalogue_ids if m not in p.method_ids]
    runs = (f"runs in nnxai: {', '.join(p.method_ids)}" if p.method_ids else "not run in nnxai") + (
        f" (catalogue, not implemented: {', '.join(pending)})" if pending else "")
    return (f"<b>{p.name}</b> {p.reference}<br>placed by: {p.source}<br>{runs}<br>"
            f"{survey_papers.cell_label(p.cell)}")


def _interactive_figure(pts: list[Point]) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    for (done, table3), text, _ in _GROUPS:
        group = [p for p in pts if (p.implemented, p.from_table3) == (done, table3)]
        if not group:
            continue
        fig.add_trace(go.Scatter3d(
            x=[p.x for p in group], y=[p.y for p in group], z=[p.z for p in group], name=text,
            mode="markers+text", text=[p.label for p in group], textposition="middle right",
            textfont={"size": 10, "color": "black" if done else "#666666"},
            hovertext=[_hover(p) for p in group], hoverinfo="text",
            marker={"size": 5 if done else 4, "color": COLOUR_DONE if done else COLOUR_TODO,
                    "symbol": "circle" if table3 else "diamond",
                    "line": {"width": 1, "color": "black"} if done else {"width": 0}}))

    def axis(title: str, labels: list[str]) -> dict:
        return {"title": {"text": title}, "tickvals": list(range(len(labels))), "ticktext": labels,
                "range": [-0.5, len(labels) - 0.5], "autorange": False}

    n = (len(Engagement), len(ExplanationType), len(Scope))
    fig.update_layout(
        title={"text": f"The survey's 3D taxonomy (Fig. 2): one point per paper and cell; {_summary(pts)}"},
        scene={"xaxis": axis("engagement", [e.value.capitalize() for e in Engagement]),
               "yaxis": axis("explanation type", [t.label for t in ExplanationType]),
               "zaxis": axis("scope", [s.label for s in Scope]),
               "aspectmode": "manual", "aspectratio": dict(zip("xyz", (k / max(n) for k in n)))},
        legend={"x": 0.0, "y": 1.0}, margin={"l": 0, "r": 0, "t": 50, "b": 0}, template="plotly_white")
    return fig


@report_item("taxonomy3d", kind="figure")
def write_taxonomy3d(out_dir: Path) -> list[Path]:
    """Draw the survey's Fig. 2 from its papers and the registry: ``taxonomy3d.pdf``, ``.png``, ``.html``.

    Parameters
    ----------
    out_dir : pathlib.Path
        Folder of the generated figures (``paper/figures``); created if missing.

    Returns
    -------
    list of pathlib.Path
        The PDF, the PNG (``DPI`` dots per inch) and the self-contained interactive HTML, each written
        atomically. Same registry, same bytes.
    """
    out_dir = Path(out_dir)
    pts = points()
    fig = _static_figure(pts)
    paths = []
    for fmt in ("pdf", "png"):
        path = out_dir / f"taxonomy3d.{fmt}"
        with atomic_open(path, "wb") as handle:
            fig.savefig(handle, format=fmt, dpi=DPI, metadata=_METADATA[fmt])
        paths.append(path)
    html = _interactive_figure(pts).to_html(
        include_plotlyjs=True, full_html=True, div_id="taxonomy3d", config={"displaylogo": False})
    paths.append(atomic_write_text(out_dir / "taxonomy3d.html", html))
    return paths
