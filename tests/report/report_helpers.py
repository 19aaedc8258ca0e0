"""Structural parsing of the report's LaTeX and Markdown outputs, for the report tests."""

from __future__ import annotations

import re

_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def outside_math(tex: str) -> str:
    """``tex`` with every ``$...$`` span removed (escaped ``\\$`` kept as text)."""
    parts = _UNESCAPED_DOLLAR.split(tex)
    assert len(parts) % 2 == 1, "unbalanced $ in LaTeX output"
    return "".join(parts[::2])


def braces_balanced(tex: str) -> bool:
    depth = 0
    for match in re.finditer(r"(?<!\\)[{}]", tex.replace("\\\\", "")):
        depth += 1 if match.group() == "{" else -1
        if depth < 0:
            return False
    return depth == 0


def tabular_rows(tex: str) -> list[str]:
    """The rows of the (only) tabular(x) environment of ``tex``, rules excluded."""
    body = re.search(r"\\begin\{tabularx?\}.*?\n(.*?)\\end\{tabularx?\}", tex, re.S).group(1)
    rows = [r.strip() for r in re.split(r"\\\\(?:\[[^\]]*\])?", body)]
    rows = [re.sub(r"\\(toprule|midrule|bottomrule)", "", r).strip() for r in rows]
    return [r for r in rows if r]


def count_unescaped(text: str, char: str) -> int:
    return len(re.findall(rf"(?<!\\){re.escape(char)}", text))


def md_rows(md: str) -> list[list[str]]:
    """The body rows of the first Markdown pipe table of ``md``, cells stripped."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln.strip())[1:-1]] for ln in lines[2:]]
