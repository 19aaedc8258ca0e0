"""The paper builds itself: paper/main.tex includes every generated table, figure and document, and
``nnxai paper`` (the rule build_paper) compiles it with latexmk, or says what is missing before it starts."""

from __future__ import annotations

import re
import shutil
import subprocess
import types
from pathlib import Path

import pytest

from nnxai.cli import main
from nnxai.report import REPORT_ITEMS
from nnxai.report import paper_pdf
from nnxai.report.paper_pdf import PaperBuildError, build, included_files
from nnxai import workflow

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "paper" / "main.tex"


def test_main_tex_includes_every_generated_table_figure_and_document():
    included = {str(p) for p in included_files(MAIN)}
    expected = set()
    for name, item in REPORT_ITEMS.items():
        folder = {"table": "tables/", "figure": "figures/", "document": ""}[item.kind]
        expected.add(f"{folder}{name}.{'pdf' if item.kind == 'figure' else 'tex'}")
    assert expected <= included, sorted(expected - included)


def _packages(text: str) -> set[str]:
    found = set()
    for names in re.findall(r"\\usepackage(?:\[[^\]]*\])?\{([^}]+)\}", text):
        found |= {n.strip() for n in names.split(",") if re.fullmatch(r"[a-z0-9]+", n.strip())}
    return found


def test_the_tex_script_checks_every_package_the_paper_and_its_tables_load():
    script = (ROOT / "envs" / "tex.sh").read_text()
    styles = set(re.search(r"STYLES=\(([^)]*)\)", script).group(1).split())
    needed = _packages(MAIN.read_text())
    for source in (ROOT / "src" / "nnxai" / "report").glob("*.py"):   # the tables' "Needs \usepackage{...}"
        needed |= _packages(source.read_text().replace("\\\\", "\\"))
    assert needed <= styles, sorted(needed - styles)


def _paper(tmp_path: Path, body: str = "\\input{tables/t}") -> Path:
    paper = tmp_path / "paper"
    (paper / "tables").mkdir(parents=True)
    (paper / "tables" / "t.tex").write_text("Generated table alpha.\n")
    (paper / "main.tex").write_text("\\documentclass{article}\n\\begin{document}\n" + body + "\n\\end{document}\n")
    return paper


def test_missing_tools_are_named_before_anything_runs(tmp_path, monkeypatch):
    _paper(tmp_path)
    monkeypatch.setattr(paper_pdf.shutil, "which", lambda tool: None)
    ran = []
    monkeypatch.setattr(paper_pdf.subprocess, "run", lambda *a, **k: ran.append(a))
    with pytest.raises(PaperBuildError, match=r"latexmk, pdflatex.*bash envs/tex.sh"):
        build(tmp_path)
    assert not ran and not (tmp_path / "paper" / "main.pdf").exists()


def test_a_missing_generated_input_is_named_with_what_writes_it(tmp_path):
    _paper(tmp_path, "\\input{tables/t}\n% \\input{tables/commented}\n\\includegraphics{figures/fig.pdf}")
    with pytest.raises(PaperBuildError, match=r"figures/fig\.pdf; they come from `snakemake --cores 2 report_all`"):
        build(tmp_path)


def test_the_pdf_holds_the_generated_text_and_the_same_inputs_give_the_same_bytes(tmp_path):
    paper = _paper(tmp_path)
    pdf = build(tmp_path)
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "Generated table alpha." in text
    first = pdf.read_bytes()
    shutil.rmtree(paper / ".build")
    assert build(tmp_path).read_bytes() == first
    assert not list(paper.glob(".*.tmp"))


def test_a_latex_error_names_its_log_and_keeps_the_previous_pdf(tmp_path):
    paper = _paper(tmp_path)
    previous = build(tmp_path).read_bytes()
    (paper / "tables" / "t.tex").write_text("\\undefinedcommand\n")
    with pytest.raises(PaperBuildError, match=r"Undefined control sequence.*full log: .*main\.log"):
        build(tmp_path)
    assert (paper / "main.pdf").read_bytes() == previous


def test_a_source_elsewhere_reads_the_workdirs_generated_files(tmp_path):
    """The workflow passes the repository's main.tex; a relocated run (--directory) builds its own tables."""
    _paper(tmp_path)
    source = tmp_path / "repo" / "main.tex"
    source.parent.mkdir()
    (tmp_path / "paper" / "main.tex").rename(source)
    pdf = build(tmp_path, source=source)
    assert pdf == tmp_path / "paper" / "main.pdf" and pdf.stat().st_size > 0


def test_the_cli_reports_a_missing_tool_in_one_line(tmp_path, monkeypatch, capsys):
    _paper(tmp_path)
    monkeypatch.setattr(paper_pdf.shutil, "which", lambda tool: None)
    assert main(["paper", "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nnxai paper: error: paper/main.pdf needs latexmk") and "Traceback" not in err


def _workflow(outputs):
    jobs = [types.SimpleNamespace(output=out) for out in outputs]
    return types.SimpleNamespace(dag=types.SimpleNamespace(needrun_jobs=lambda: jobs))


def test_a_run_that_would_build_the_paper_without_tex_stops_before_its_first_job(monkeypatch):
    monkeypatch.setattr(paper_pdf.shutil, "which", lambda tool: None)
    with pytest.raises(RuntimeError, match="bash envs/tex.sh.*evaluate_all report_all"):
        workflow.check_paper_tools(_workflow([["data/metrics/all.csv"], [workflow.PAPER_PDF]]))
    workflow.check_paper_tools(_workflow([["data/metrics/all.csv"]]))      # no PDF asked for: no TeX needed


def test_the_workflow_targets_and_dvc_stage_include_the_pdf():
    from nnxai.config import load_config
    from nnxai.dvc_yaml import render

    assert workflow.targets(load_config({"profile": "smoke"}))["paper"] == [workflow.PAPER_PDF]
    assert "paper/main.pdf:" in render() and (ROOT / "dvc.yaml").read_text() == render()


def test_generated_latex_never_carries_a_character_pdflatex_cannot_print():
    from nnxai.report import latex_escape

    text = latex_escape("ρ ↑ ↓ ≤ ∑ 漢 Tiňo é µ Ω")
    assert all(ord(c) < 0x180 for c in text), text
    assert "$\\rho$" in text and "$\\Omega$" in text and "U+6F22" in text


def test_tex_script_check_mode_passes_where_the_paper_builds():
    proc = subprocess.run(["bash", str(ROOT / "envs" / "tex.sh"), "check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
