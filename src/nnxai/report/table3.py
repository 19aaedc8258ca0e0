"""Table III of the survey: an overview of the interpretability papers, generated from the registry.

Zhang, Tiňo, Leonardis & Tang (2021), Section II, Table III: rows are the first two dimensions of the
taxonomy (engagement: passive / active, times explanation type: rule, hidden semantics, attribution,
by example), columns the third (scope: local, semi-local, global). Each cell lists every registered method
whose scopes include that column, by name and survey reference numbers, so a method registered later
(a catalogue entry or a new :class:`~nnxai.taxonomy.MethodSpec`) appears here without editing this file.
Methods implemented in ``nnxai`` are set in bold and marked ✓.

Below the table: the survey's own legend (FO, FZ), footnotes (1-3) and cell note ("No explicit methods but
many in the below cell can be applied here"), transcribed from its Table III; in the LaTeX table the marks
also sit where the survey puts them (on the entries citing the marked papers, on the passive attribution
row, in the passive hidden-semantics local cell).  The Markdown table keeps its cells plain (one entry
per method, parsed by the tests) and names each mark's place in the note instead.  A last note lists the
cells where the registry places a method but the survey does not place the paper it cites
(:mod:`nnxai.report.survey_papers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nnxai import registry
from nnxai.io import atomic_write_text
from nnxai.report import survey_papers
from nnxai.report._format import CHECK, RAGGED, latex_escape, md_escape, ref_labels, wide_table_head
from nnxai.report._items import report_item
from nnxai.taxonomy import Engagement, ExplanationType, MethodSpec, Scope

EMPTY = "—"
CAPTION = ("An overview of the interpretability papers (the survey's Table III), generated from the "
           "nnxai method registry.")
LEGEND = ("Bold with ✓: implemented in nnxai. [k]: reference k of the survey; [2nd: k]: reference k of "
          "the companion survey (Zhang et al., 2019). A method that spans several scopes appears in each.")

Cell = tuple[Engagement, ExplanationType, Scope]


@dataclass(frozen=True)
class SurveyMark:
    """A legend entry or footnote of the survey's Table III, and where the survey sets its mark: on the
    entries citing ``refs``, or on the label of the row ``row`` (engagement, explanation type)."""

    mark: str
    text: str
    refs: tuple[int, ...] = ()
    row: tuple[Engagement, ExplanationType] | None = None
    place: str = ""  #: where the mark sits, in words (for the Markdown note)


#: The survey's Table III legend ("FO First-order rule", "FZ Fuzzy rule") and footnotes 1-3, verbatim.
SURVEY_MARKS: tuple[SurveyMark, ...] = (
    SurveyMark("FO", "First-order rule", refs=(86,), place="on Gyan [86]"),
    SurveyMark("FZ", "Fuzzy rule", refs=(87, 88), place="on the unnamed entry [87], [88]"),
    SurveyMark("1", "Some attribution methods (e.g., DeconvNet, Guided Backprop) arguably have certain "
               "non-locality because of the rectification operation.",
               row=(Engagement.PASSIVE, ExplanationType.ATTRIBUTION), place="on the passive Attribution row"),
    SurveyMark("2", "Short for counterfactual visual explanations", refs=(78,), place="on CVE [78]"),
    SurveyMark("3", "SpRAy is flexible to provide semi-local or global explanations by clustering local "
               "(individual) attributions.", refs=(67,), place="on SpRAy [67]"),
)
#: The survey's notes inside cells of its Table III, verbatim.
SURVEY_CELL_NOTES: dict[Cell, str] = {
    (Engagement.PASSIVE, ExplanationType.HIDDEN_SEMANTICS, Scope.LOCAL):
        "(*No explicit methods but many in the below cell can be applied here.)",
}
SURVEY_NOTE_HEADING = "The survey's legend, footnotes and notes (its Table III)"


def cells(specs: list[MethodSpec] | None = None) -> dict[Cell, list[MethodSpec]]:
    """Group the registered methods by taxonomy cell, in catalogue order within each cell.

    Parameters
    ----------
    specs : list of MethodSpec, optional
        The methods to place; by default every entry of :func:`nnxai.registry.specs`.

    Returns
    -------
    dict
        Every (engagement, explanation type, scope) cell of Table III, empty ones included, mapped to
        the methods whose ``scopes`` contain that scope.
    """
    specs = registry.specs() if specs is None else specs
    table: dict[Cell, list[MethodSpec]] = {
        (e, t, s): [] for e in Engagement for t in ExplanationType for s in Scope}
    for spec in specs:
        for scope in spec.scopes:
            table[(spec.engagement, spec.explanation_type, scope)].append(spec)
    return table


def _entry_md(spec: MethodSpec, implemented: bool) -> str:
    name = md_escape(spec.name)
    refs = ", ".join(ref_labels(spec))
    text = " ".join(part for part in (f"**{name}**" if implemented else name, refs) if part)
    return f"{text} {CHECK}" if implemented else text


def _marks(spec: MethodSpec) -> list[str]:
    """The survey's marks on the entries citing their papers (``["FO"]`` for Gyan [86])."""
    return [m.mark for m in SURVEY_MARKS if set(m.refs) & set(spec.refs)]


def _entry_tex(spec: MethodSpec, implemented: bool) -> str:
    name = latex_escape(spec.name) + "".join(f"\\textsuperscript{{{m}}}" for m in _marks(spec))
    refs = ", ".join(latex_escape(r) for r in ref_labels(spec))
    text = " ".join(part for part in (f"\\textbf{{{name}}}" if implemented else name, refs) if part)
    return f"{text}~$\\checkmark$" if implemented else text


def _footer(n_done: int, n_all: int) -> str:
    return f"{n_done} of {n_all} methods implemented"


def _row_label_tex(engagement: Engagement, etype: ExplanationType) -> str:
    marks = [m.mark for m in SURVEY_MARKS if m.row == (engagement, etype)]
    return latex_escape(etype.label) + "".join(f"\\textsuperscript{{{m}}}" for m in marks)


def survey_notes(specs: list[MethodSpec] | None = None) -> list[str]:
    """The notes below the table, as plain text: the survey's legend, footnotes and cell notes (with where
    each sits), then the cells where the registry places a method whose cited papers the survey puts
    elsewhere (e.g. a method run at more scopes than the survey gives its paper)."""
    notes = [f"{m.mark}: {m.text} ({m.place})" if not m.mark.isdigit() else f"{m.mark} ({m.place}): {m.text}"
             for m in SURVEY_MARKS]
    notes += [f"In the cell {survey_papers.cell_label(cell)}: {text}" for cell, text in SURVEY_CELL_NOTES.items()]
    placed = {e.ref: e for e in survey_papers.PAPERS}
    for spec in registry.specs() if specs is None else specs:
        cited = [placed[r] for r in spec.refs if r in placed]
        for scope in spec.scopes:
            cell = (spec.engagement, spec.explanation_type, scope)
            if cited and not any(cell in e.cells for e in cited):
                where = "; ".join(f"[{e.ref}]: " + ", ".join(survey_papers.cell_label(c) for c in e.cells)
                                  for e in cited)
                notes.append(f"{spec.name} is listed under {survey_papers.cell_label(cell)} by this project's "
                             f"registry; the survey places {where} (see the table survey_papers)")
    return notes


def _markdown(table: dict[Cell, list[MethodSpec]], done: set[str], n_all: int, notes: list[str]) -> str:
    header = ["Engagement", "Explanation type", *(s.label for s in Scope)]
    lines = ["<!-- generated by nnxai.report.table3 from the method registry; do not edit -->", "",
             f"**Table III.** {md_escape(CAPTION)}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for engagement in Engagement:
        for etype in ExplanationType:
            row = [engagement.value.capitalize(), etype.label]
            for scope in Scope:
                entries = [_entry_md(s, s.id in done) for s in table[(engagement, etype, scope)]]
                row.append("; ".join(entries) or EMPTY)
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", md_escape(LEGEND), "", f"**{_footer(len(done), n_all)}.**",
              "", f"**{md_escape(SURVEY_NOTE_HEADING)}.**", ""]
    lines += [f"- {md_escape(note)}" for note in notes]
    return "\n".join(lines) + "\n"


def _latex(table: dict[Cell, list[MethodSpec]], done: set[str], n_all: int, notes: list[str]) -> str:
    col = RAGGED
    lines = wide_table_head("nnxai.report.table3 from the method registry", "booktabs,tabularx,amssymb",
                            latex_escape(CAPTION), "tab:overview", f"@{{}}l{col}p{{1.5cm}}{col}X{col}X{col}X@{{}}")
    lines += [" & ".join(["Engagement", "Type", *(latex_escape(s.label) for s in Scope)]) + " \\\\"]
    for engagement in Engagement:
        lines.append("\\midrule")
        for i, etype in enumerate(ExplanationType):
            row = [engagement.value.capitalize() if i == 0 else "", _row_label_tex(engagement, etype)]
            for scope in Scope:
                entries = [_entry_tex(s, s.id in done) for s in table[(engagement, etype, scope)]]
                note = SURVEY_CELL_NOTES.get((engagement, etype, scope))
                entries += [f"\\emph{{{latex_escape(note)}}}"] if note else []
                row.append("; ".join(entries) or "---")
            lines.append(" & ".join(row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabularx}", "", "\\smallskip",
              f"{{\\footnotesize {latex_escape(LEGEND)} {latex_escape(_footer(len(done), n_all))}.}}",
              "", "\\smallskip",
              f"{{\\footnotesize \\textbf{{{latex_escape(SURVEY_NOTE_HEADING)}.}}",
              *(f"{latex_escape(note)}." if not note.endswith(".") else latex_escape(note) for note in notes),
              "}", "\\end{table*}"]
    return "\n".join(lines) + "\n"


@report_item("table3", kind="table")
def write_table3(out_dir: Path) -> list[Path]:
    """Write the survey's Table III from the registry as ``table3.md`` and ``table3.tex``.

    The implemented status is read from :func:`nnxai.registry.is_implemented` when this runs, so the
    table follows the code; the footer counts the implemented methods ("n of N methods implemented").
    """
    out_dir = Path(out_dir)
    specs = registry.specs()
    table = cells(specs)
    done = {s.id for s in specs if registry.is_implemented(s.id)}
    notes = survey_notes(specs)
    return [atomic_write_text(out_dir / "table3.md", _markdown(table, done, len(specs), notes)),
            atomic_write_text(out_dir / "table3.tex", _latex(table, done, len(specs), notes))]
