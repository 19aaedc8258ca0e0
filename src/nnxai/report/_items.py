"""The registry of report items: every table and figure, registered by its writer where it is defined::

    @report_item("table3", kind="table")
    def write_table3(out_dir: Path) -> list[Path]: ...

:data:`nnxai.report.TABLES` / :data:`~nnxai.report.FIGURES` (name -> writer) and the workflow's target
lists are derived from :data:`REPORT_ITEMS`; nothing else lists the items.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nnxai.registration import Registry

#: The files every table / figure is written as (the Snakefile's report rules are generic over them).
TABLE_FORMATS = ("md", "tex")
FIGURE_FORMATS = ("pdf", "png", "html")
DOCUMENT_FORMATS = ("md", "tex")       #: a document (the results) is written to ``paper/`` itself
KIND_FORMATS = {"table": TABLE_FORMATS, "figure": FIGURE_FORMATS, "document": DOCUMENT_FORMATS}
#: Where each kind's files go (the Snakefile's report rules and ``nnxai report --out``).
KIND_FOLDERS = {"table": "paper/tables", "figure": "paper/figures", "document": "paper"}

Writer = Callable[..., list[Path]]


@dataclass(frozen=True)
class ReportItem:
    """One table, figure or document: ``writer(out_dir[, workdir=...])`` writes ``<name>.<format>`` for each
    format."""

    name: str
    kind: Literal["table", "figure", "document"]
    formats: tuple[str, ...]
    writer: Writer

    @property
    def needs_workdir(self) -> bool:
        """Whether the writer reads this run's results (a ``workdir`` argument)."""
        return "workdir" in inspect.signature(self.writer).parameters


REPORT_ITEMS: Registry[ReportItem] = Registry("report item", packages=("nnxai.report",))


def report_item(name: str, kind: Literal["table", "figure", "document"]) -> Callable[[Writer], Writer]:
    """Register the decorated writer as the table, figure or document ``name`` (in the formats of its kind)."""
    if kind not in KIND_FORMATS:
        raise ValueError(f"report item {name!r}: kind must be one of {sorted(KIND_FORMATS)}, got {kind!r}")

    def add(writer: Writer) -> Writer:
        item = ReportItem(name, kind, KIND_FORMATS[kind], writer)
        if writer.__doc__ and "Parameters\n" not in writer.__doc__:
            writer.__doc__ = inspect.cleandoc(writer.__doc__).rstrip() + "\n\n" + _contract_doc(item)
        REPORT_ITEMS.register(name, item)
        return writer

    return add


def _contract_doc(item: ReportItem) -> str:
    """The Parameters and Returns sections every writer shares, appended to its docstring."""
    folder = KIND_FOLDERS[item.kind]
    lines = ["Parameters", "----------", "out_dir : pathlib.Path",
             f"    Folder of the generated {item.kind}s (``{folder}``); created if missing."]
    if item.needs_workdir:
        lines += ["workdir : pathlib.Path", "    The run's work directory (its results: ``data/metrics/all.csv``)."]
    files = ", ".join(f"``{item.name}.{fmt}``" for fmt in item.formats)
    lines += ["", "Returns", "-------", "list of pathlib.Path", f"    The files written, each atomically: {files}."]
    return "\n".join(lines)


def items_of(kind: str) -> dict[str, ReportItem]:
    """The registered items of one kind, sorted by name (not by the order their modules were imported)."""
    return {name: item for name, item in sorted(REPORT_ITEMS.items()) if item.kind == kind}
