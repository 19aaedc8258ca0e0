"""Drawing and saving the results figures: one style, the Agg canvas and byte-stable files.

Every results figure is written as PDF, PNG and HTML (the formats of :data:`nnxai.workflow.FIGURE_FORMATS`):
the HTML page embeds the PNG and lists the values drawn, so it can be read without a PDF viewer. Same data,
same bytes: fixed fonts and sizes, no creation date in the PDF, no software version in the PNG, as
:mod:`nnxai.report.taxonomy3d` does.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
from collections.abc import Iterator
from pathlib import Path

from typing import TYPE_CHECKING

from nnxai.io import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

# matplotlib and seaborn are imported where a figure is drawn, not with the module: the Snakefile loads
# every report item to plan, and a no-op rerun should not pay for the plotting stack.

DPI = 200
FORMATS = ("pdf", "png", "html")
_METADATA = {"pdf": {"CreationDate": None, "ModDate": None}, "png": {"Software": None}}
_STYLE = {"font.family": "DejaVu Sans", "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8,
          "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 7, "legend.title_fontsize": 7,
          "figure.titlesize": 11, "svg.hashsalt": "nnxai"}
NOTE_STYLE = {"ha": "center", "va": "center", "fontsize": 9, "color": "#555555", "style": "italic"}


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """Seaborn's white-grid style with fixed fonts, for drawing and saving (restored afterwards)."""
    import matplotlib
    import seaborn as sns

    with sns.axes_style("whitegrid"), matplotlib.rc_context(_STYLE):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas (no pyplot, no GUI backend, no global figure list)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _html(name: str, caption: str, png: bytes, values: pd.DataFrame) -> str:
    table = values.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">"
            f"<title>{html.escape(name)}</title></head>\n<body>\n<figure>\n"
            f"<img alt=\"{html.escape(name)}\" style=\"max-width:100%\" "
            f"src=\"data:image/png;base64,{base64.b64encode(png).decode()}\">\n"
            f"<figcaption>{html.escape(caption)}</figcaption>\n</figure>\n"
            f"<h2>Values drawn</h2>\n{table}\n</body>\n</html>\n")


def save_figure(fig: Figure, out_dir: Path, name: str, caption: str, values: pd.DataFrame) -> list[Path]:
    """Write ``<name>.pdf``, ``.png`` (``DPI``) and ``.html`` (the PNG, ``caption`` and ``values``) atomically.

    Call inside :func:`figure_style`, where the figure was drawn.
    """
    out_dir = Path(out_dir)
    rendered = {}
    for fmt in ("pdf", "png"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=DPI, metadata=_METADATA[fmt])
        rendered[fmt] = buffer.getvalue()
    paths = [atomic_write_bytes(out_dir / f"{name}.{fmt}", data) for fmt, data in rendered.items()]
    paths.append(atomic_write_text(out_dir / f"{name}.html", _html(name, caption, rendered["png"], values)))
    return paths


def note(ax, text: str) -> None:
    """Write ``text`` in the middle of an empty axis and hide its frame: the "no data yet" panels."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, wrap=True, **NOTE_STYLE)
    ax.set_axis_off()
