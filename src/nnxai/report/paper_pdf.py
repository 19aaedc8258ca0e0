"""Compile the paper: ``paper/main.tex`` with the generated tables, figures and results → ``paper/main.pdf``.

``main.tex`` holds prose only; every table (``paper/tables/*.tex``), figure (``paper/figures/*.pdf``) and the
results document (``paper/results.tex``) it includes is written by ``nnxai report`` from this run's
measurements.  :func:`build` checks, before compiling, that the TeX tools exist (``bash envs/tex.sh`` installs
Debian's TeX Live packages) and that every file the source includes is there, naming what is missing and
what writes it; it then runs ``latexmk -pdf`` in a build folder beside the source (``paper/.build``,
ignored by git and DVC) and moves the PDF into place atomically, so a failed or interrupted build leaves
the previous ``main.pdf`` (or none), never half of one.  ``SOURCE_DATE_EPOCH`` is fixed, so the same
inputs give the same bytes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from nnxai.io import atomic_write_bytes

SOURCE = Path("paper/main.tex")
PDF = Path("paper/main.pdf")
BUILD = Path("paper/.build")
TOOLS = ("latexmk", "pdflatex")
INSTALL_HINT = "run `bash envs/tex.sh` (installs Debian's TeX Live packages with apt; root or sudo)"
_INCLUDE = re.compile(r"^[^%\n]*?\\(input|includegraphics|includepdf)(?:\[[^\]]*\])?\{([^}]+)\}", re.MULTILINE)
_LATEX_ERROR = re.compile(r"^(!|\S*\.tex:\d+:)")


class PaperBuildError(RuntimeError):
    """The paper cannot be built: a tool or an input is missing, or LaTeX failed (the message says which)."""


def missing_tools() -> list[str]:
    """The TeX programs the build needs that are not on ``PATH``."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def check_tools() -> None:
    """Raise :class:`PaperBuildError` naming the missing programs and how to install them."""
    gone = missing_tools()
    if gone:
        raise PaperBuildError(f"paper/main.pdf needs {', '.join(gone)}, not found on PATH: {INSTALL_HINT}")


def included_files(source: Path) -> list[Path]:
    """Every file ``source`` includes with ``\\input``, ``\\includegraphics`` or ``\\includepdf``, relative to its folder (a
    name without an extension is LaTeX's ``.tex``), in the order they appear; commented lines are skipped."""
    found = []
    for command, name in _INCLUDE.findall(source.read_text()):
        path = Path(name)
        if command == "input" and not path.suffix:
            path = path.with_suffix(".tex")
        found.append(path)
    return found


def build(workdir: Path = Path("."), source: Path | None = None, quiet: bool = True) -> Path:
    """Compile ``source`` (default ``<workdir>/paper/main.tex``; the workflow passes the repository's, so a
    run relocated with ``--directory`` builds its own outputs) into ``<workdir>/paper/main.pdf``.  The
    source's ``\\input`` and ``\\includegraphics`` paths are relative to ``<workdir>/paper``."""
    paper = Path(workdir) / SOURCE.parent
    source = Path(source) if source is not None else Path(workdir) / SOURCE
    if not source.is_file():
        raise PaperBuildError(f"{source}: not found (the paper's source is tracked by git: restore it with "
                              f"`git checkout -- {SOURCE}`)")
    check_tools()
    gone = [p for p in included_files(source) if not (paper / p).is_file()]
    if gone:
        raise PaperBuildError(f"{source} includes files that are not written yet: "
                              f"{', '.join(str(paper / p) for p in gone)}; they come from "
                              f"`snakemake --cores 2 report_all` (or `nnxai report <item> --out paper/...`)")
    build_dir = paper / BUILD.name
    build_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": "0", "FORCE_SOURCE_DATE": "1"}
    command = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
               f"-outdir={BUILD.name}", f"-jobname={PDF.stem}", str(source.resolve())]
    done = subprocess.run(command, cwd=paper, env=env, capture_output=True, text=True)
    if not quiet:
        print(done.stdout)
    log = build_dir / f"{PDF.stem}.log"
    if done.returncode != 0:
        lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
        errors = [line for line in lines if _LATEX_ERROR.match(line)]
        raise PaperBuildError(f"latexmk failed (exit {done.returncode}) on {source}: "
                              f"{' | '.join(errors[:3]) or done.stderr.strip()[-500:]}; full log: {log}")
    return atomic_write_bytes(Path(workdir) / PDF, (build_dir / PDF.name).read_bytes())
