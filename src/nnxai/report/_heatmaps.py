"""Heatmaps set for the page: cells drawn directly, panels laid out on pages of the paper, pages saved.

Shared by the detail figure of the attribution metrics (:mod:`nnxai.report.metrics_heatmap`) and its one-page
overview (:mod:`nnxai.report.metrics_overview`).  Sizes are in inches and points, so that a figure printed at
the paper's text width (:data:`PAGE_WIDTH`) keeps every text at 6 pt or more and no page is taller than a
page of text (:data:`PAGE_HEIGHT`).

Layout (:func:`layout_pages`): panels that show the same columns are stacked, their column labels written
once, under the last; the stacks are set side by side and line by line like the words of a text; a stack
wider than the page is cut into column parts, one taller than what is left of a page is cut between its
panels (or, on an empty page, inside a panel).
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from nnxai.io import atomic_write_bytes, atomic_write_text
from nnxai.report._figure import _METADATA, DPI, save_figure
from nnxai.report._results import format_value

CMAP, CMAP_UNKNOWN = "viridis", "Greys"
PAGE_WIDTH, PAGE_HEIGHT = 7.0, 9.5   #: inches: the paper's text width and a page's text height
MARGIN = 0.1                          #: inches around a page's content
LABEL_PT, CELL_PT, TITLE_PT = 6.5, 6.0, 7.5   #: tick labels, cell texts, panel titles (>= 6 pt printed)
ROW_HEIGHT = 8.5 / 72                 #: inches per row of a detail panel
TITLE_HEIGHT = TITLE_PT * 1.6 / 72    #: inches of a panel's title line
HEAD = 0.42                           #: inches of a page's title line, remark and colour bar
BLOCK_GAP, LINE_GAP = 0.22, 0.12      #: inches between stacks side by side / between lines of stacks
MIN_CUT_ROWS = 3                      #: a panel cut inside keeps at least this many rows on a page


@dataclass(frozen=True)
class Block:
    """One drawn panel: its rows and columns, each column's colour scale."""

    title: str
    values: pd.DataFrame      #: rows × columns drawn, NaN where not measured
    goodness: pd.DataFrame    #: same shape, in [0, 1], 1 = best of its column
    known: tuple[bool, ...]   #: per column: the direction is known (viridis) or not (greys)

    def part(self, rows: slice, columns: slice, suffix: str = "") -> Block:
        """The rows and columns given, titled ``<title> <suffix>`` (a panel cut to fit a page)."""
        return Block(f"{self.title} {suffix}".rstrip(), self.values.iloc[rows, columns],
                     self.goodness.iloc[rows, columns], self.known[columns])

    @property
    def height(self) -> float:
        return TITLE_HEIGHT + ROW_HEIGHT * len(self.values)


def short_value(value: float) -> str:
    """:func:`~nnxai.report._results.format_value` without the exponent's sign and zeros: ``8.6e-8``, ``1.2e2``."""
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + m.group(1).replace("+", "") + m.group(2), format_value(value))


# ----------------------------------------------------------------------------- drawing
def cell_colours(scores: np.ndarray, known: Sequence[bool]) -> np.ndarray:
    """RGBA per cell: viridis of the goodness, greys where the direction is unknown, white where NaN."""
    import matplotlib

    good, grey = matplotlib.colormaps[CMAP], matplotlib.colormaps[CMAP_UNKNOWN]
    rgba = np.ones((*scores.shape, 4))
    for j, is_known in enumerate(known):
        column = scores[:, j]
        measured = ~np.isnan(column)
        # unknown direction: greys from 0.3, so that its lowest value is not blank
        rgba[measured, j] = good(column[measured]) if is_known else grey((column[measured] + 0.3) / 1.3)
    return rgba


def draw_cells(ax, rgba: np.ndarray, texts: np.ndarray, fontsize: float = CELL_PT,
               widths: Sequence[float] | None = None) -> np.ndarray:
    """Seaborn's heatmap look, drawn directly (``sns.heatmap`` redraws the figure once per panel to place
    its labels): coloured cells with white borders, ``texts`` written in black or white by contrast.

    Columns are ``widths`` wide (default 1 each), rows 1 high, in data units; returns the columns' centres.
    """
    from seaborn.utils import relative_luminance

    n_rows, n_cols = rgba.shape[:2]
    edges = np.concatenate([[0.0], np.cumsum(np.ones(n_cols) if widths is None else widths)])
    centres = (edges[:-1] + edges[1:]) / 2
    ax.pcolormesh(edges, np.arange(n_rows + 1), rgba, edgecolors="white", linewidth=0.5)
    for (i, j), text in np.ndenumerate(texts):
        if text:
            dark = relative_luminance(rgba[i, j]) <= 0.408   # seaborn's threshold
            ax.text(centres[j], i + 0.5, text, ha="center", va="center", fontsize=fontsize,
                    color="white" if dark else "black")
    ax.set(xlim=(0, edges[-1]), ylim=(n_rows, 0))
    ax.tick_params(length=0, pad=1.5, labelsize=LABEL_PT)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return centres


def text_width(fig, texts, size: float, weight: str = "normal") -> float:
    """The widest line of ``texts`` in inches, as ``fig``'s renderer sets them in the current style."""
    from matplotlib.font_manager import FontProperties

    renderer, font = fig.canvas.get_renderer(), FontProperties(size=size, weight=weight)
    lines = [line for text in texts for line in str(text).split("\n")] or [""]
    return max(renderer.get_text_width_height_descent(line, font, ismath=False)[0] for line in lines) / fig.dpi


def colour_bar(fig, left: float, top: float, width: float, ends: tuple[str, str],
               label: str = "colour: rank within a column") -> None:
    """A small viridis bar, ``width`` inches from (``left``, ``top``) inches of ``fig``'s top-left corner:
    ``label`` over it, ``ends`` (worst, best) under it; about 0.3 inches high in all."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig_width, fig_height = fig.get_size_inches()
    rect = [left / fig_width, 1 - (top + 0.17) / fig_height, width / fig_width, 0.07 / fig_height]
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), CMAP), cax=fig.add_axes(rect), orientation="horizontal",
                       ticks=[0, 1])
    bar.ax.set_xticklabels(ends, fontsize=LABEL_PT)
    bar.ax.tick_params(length=0, pad=1.5)
    bar.ax.set_title(label, fontsize=LABEL_PT, pad=2)
    bar.outline.set_visible(False)


def page_head(fig, title: str, remark: str, ends: tuple[str, str], label: str) -> None:
    """A page's title and ``remark`` at the top left, a small viridis bar (``label``, ``ends``: worst, best) at
    the right.

    ``fig`` is laid out by hand (no layout engine), :data:`MARGIN` and :data:`HEAD` inches at its top.
    """
    fig.set_layout_engine("none")
    width, height = fig.get_size_inches()
    fig.text(MARGIN / width, 1 - MARGIN / height, title, ha="left", va="top", fontsize=9)
    if remark:
        fig.text(MARGIN / width, 1 - (MARGIN + 0.2) / height, remark, ha="left", va="top", fontsize=LABEL_PT,
                 style="italic", color="#555555")
    colour_bar(fig, width - MARGIN - 0.3 - 1.5, MARGIN + 0.1, 1.5, ends, label)


# ----------------------------------------------------------------------------- pages
@dataclass(frozen=True)
class Piece:
    """Blocks with the same columns, stacked, placed with their top-left corner at ``x``, ``y`` (inches from
    the content's left edge and from below the page head)."""

    blocks: tuple[Block, ...]
    label: float          #: inches of the row labels, left of the cells
    cells: tuple[float, ...]   #: inches of each column
    below: float          #: inches of the column labels, under the last block
    title: float          #: inches of the widest title
    x: float = 0.0
    y: float = 0.0

    @property
    def width(self) -> float:
        return max(self.label + sum(self.cells), self.title)

    @property
    def height(self) -> float:
        return sum(b.height for b in self.blocks) + self.below


def stacks(fig, blocks: list[Block], width: float) -> list[Piece]:
    """``blocks`` grouped by their columns (order of first appearance), each group cut to ``width`` inches.

    A column is as wide as its widest value (and its label's lines, set side by side when turned).
    """
    groups: dict[tuple, list[Block]] = {}
    for block in blocks:
        groups.setdefault(tuple(block.values.columns), []).append(block)
    pieces = []
    for columns, members in groups.items():
        label = text_width(fig, [r for b in members for r in b.values.index], LABEL_PT) + 0.06
        values = np.vstack([b.values.to_numpy(dtype=float) for b in members])
        cells = [max(text_width(fig, {short_value(v) for v in values[:, j]}, CELL_PT) + 0.06,
                     (str(c).count("\n") + 1) * LABEL_PT * 1.3 / 72 + 0.02, 0.16) for j, c in enumerate(columns)]
        below = text_width(fig, columns, LABEL_PT) + 0.06
        parts, used = [[]], 0.0
        for j, cell in enumerate(cells):                  # as many columns as fit beside the labels
            if parts[-1] and used + cell > width - label:
                parts, used = [*parts, []], 0.0
            parts[-1].append(j)
            used += cell
        for p, part in enumerate(parts):
            columns_of = slice(part[0], part[-1] + 1)
            cut = [b.part(slice(None), columns_of, f"({p + 1}/{len(parts)})" if len(parts) > 1 else "")
                   for b in members]
            pieces.append(Piece(tuple(cut), label, tuple(cells[columns_of]), below,
                                text_width(fig, [b.title for b in cut], TITLE_PT, "bold")))
    return pieces


def split(piece: Piece, room: float, inside: bool) -> tuple[Piece | None, Piece | None]:
    """The head of ``piece`` that fits ``room`` inches (``None`` if none) and the rest (``None`` if none):
    cut between its blocks, or also inside one (``inside``), keeping :data:`MIN_CUT_ROWS` rows."""
    used, head, tail = piece.below, [], []
    for i, block in enumerate(piece.blocks):
        if used + block.height <= room:
            head.append(block)
            used += block.height
            continue
        rows = int((room - used - TITLE_HEIGHT) // ROW_HEIGHT)
        tail = list(piece.blocks[i:])
        if inside and not head and rows >= min(MIN_CUT_ROWS, len(block.values) - 1) and rows > 0:
            rest = block.part(slice(rows, None), slice(None), "" if block.title.endswith("(cont.)") else "(cont.)")
            head, tail = [block.part(slice(0, rows), slice(None))], [rest, *tail[1:]]
        break
    return (replace(piece, blocks=tuple(head)) if head else None,
            replace(piece, blocks=tuple(tail)) if tail else None)


def layout_pages(fig, blocks: list[Block]) -> list[list[Piece]]:
    """Set ``blocks`` on pages of :data:`PAGE_WIDTH` × :data:`PAGE_HEIGHT` (see the module docstring).

    ``fig`` measures the text (its renderer, in the current style).
    """
    width, height = PAGE_WIDTH - 2 * MARGIN, PAGE_HEIGHT - 2 * MARGIN - HEAD
    queue = deque(stacks(fig, blocks, width))
    pages, page, x, y, line = [], [], 0.0, 0.0, 0.0
    while queue:
        piece = queue.popleft()
        if x > 0 and x + piece.width > width:                   # next line
            x, y, line = 0.0, y + line + LINE_GAP, 0.0
        if piece.height > height - y:
            head, tail = split(piece, height - y, inside=not page)
            if head is None and page:                           # next page
                pages.append(page)
                page, x, y, line = [], 0.0, 0.0, 0.0
                queue.appendleft(piece)
                continue
            piece = head or piece                               # (a page's column labels alone overflow)
            if head is not None and tail is not None:
                queue.appendleft(tail)
        page.append(replace(piece, x=x, y=y))
        x, line = x + piece.width + BLOCK_GAP, max(line, piece.height)
    return pages + [page] if page else pages


def draw_page(fig, page: list[Piece]) -> None:
    """Draw one page's pieces at their places under the head (``fig``: :data:`PAGE_WIDTH` wide, laid out by
    :func:`page_head`)."""
    width, height = fig.get_size_inches()
    for piece in page:
        top = MARGIN + HEAD + piece.y
        for i, block in enumerate(piece.blocks):
            n_rows = len(block.values)
            fig.text((MARGIN + piece.x) / width, 1 - top / height, block.title, ha="left", va="top",
                     fontsize=TITLE_PT, fontweight="bold")
            top += TITLE_HEIGHT
            ax = fig.add_axes([(MARGIN + piece.x + piece.label) / width, 1 - (top + n_rows * ROW_HEIGHT) / height,
                               sum(piece.cells) / width, n_rows * ROW_HEIGHT / height])
            texts = np.vectorize(short_value, otypes=[str])(block.values.to_numpy(dtype=float))
            centres = draw_cells(ax, cell_colours(block.goodness.to_numpy(dtype=float), block.known), texts,
                                 widths=piece.cells)
            last = i == len(piece.blocks) - 1
            ax.set_xticks(centres, block.values.columns if last else [], rotation=90)
            ax.set_yticks(np.arange(n_rows) + 0.5, block.values.index)
            top += n_rows * ROW_HEIGHT


def save_pages(figs: list, out_dir: Path, name: str, caption: str, values: pd.DataFrame) -> list[Path]:
    """:func:`~nnxai.report._figure.save_figure` for a figure of several pages: a PDF page each, the PNG
    pages side by side, one image per page in the HTML (a single page is saved as one figure)."""
    if len(figs) == 1:
        return save_figure(figs[0], out_dir, name, caption, values)
    from matplotlib.backends.backend_pdf import PdfPages
    from PIL import Image

    pdf = io.BytesIO()
    with PdfPages(pdf, metadata=_METADATA["pdf"]) as pages:
        for fig in figs:
            pages.savefig(fig, dpi=DPI)
    pngs = []
    for fig in figs:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI, metadata=_METADATA["png"])
        pngs.append(buffer.getvalue())
    images = [Image.open(io.BytesIO(png)).convert("RGB") for png in pngs]
    sheet = Image.new("RGB", (sum(i.width for i in images), max(i.height for i in images)), "white")
    for i, image in enumerate(images):
        sheet.paste(image, (sum(im.width for im in images[:i]), 0))
    png = io.BytesIO()
    sheet.save(png, format="PNG", dpi=(DPI, DPI))
    imgs = "\n".join(f"<img alt=\"{html.escape(name)}, page {i + 1}\" style=\"max-width:100%\" "
                     f"src=\"data:image/png;base64,{base64.b64encode(p).decode()}\"><br>" for i, p in enumerate(pngs))
    table = values.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)
    text = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">"
            f"<title>{html.escape(name)}</title></head>\n<body>\n<figure>\n{imgs}\n"
            f"<figcaption>{html.escape(caption)}</figcaption>\n</figure>\n"
            f"<h2>Values drawn</h2>\n{table}\n</body>\n</html>\n")
    out_dir = Path(out_dir)
    return [atomic_write_bytes(out_dir / f"{name}.pdf", pdf.getvalue()),
            atomic_write_bytes(out_dir / f"{name}.png", png.getvalue()),
            atomic_write_text(out_dir / f"{name}.html", text)]
