"""Formatting shared by the report's tables: LaTeX and Markdown escaping, reference lists, marks.

Every table of the report (the survey's Tables I, III and IV) is written twice, as Markdown for the
README/website and as a LaTeX fragment that ``paper/main.tex`` ``\\input``\\ s; the helpers here keep the
two renderings of one cell in step.
"""

from __future__ import annotations

from nnxai.taxonomy import MethodSpec

CHECK = "✓"
CROSS = "✗"

# One pass over the text, character by character, so that a replacement is never escaped again.
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}
_LATEX_UNICODE = {
    "⊙": r"$\odot$",
    "∂": r"$\partial$",
    "σ": r"$\sigma$",
    "α": r"$\alpha$",
    "ε": r"$\varepsilon$",
    "∫": r"$\int$",
    "Σ": r"$\Sigma$",
    "×": r"$\times$",
    "→": r"$\rightarrow$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "≈": r"$\approx$",
    "≠": r"$\neq$",
    "−": r"$-$",
    "—": "---",
    "–": "--",
    "…": r"\ldots{}",
    "“": "``",
    "”": "''",
    "‘": "`",
    "’": "'",
    "†": r"\dag{}",
    "ň": r"\v{n}",
    "é": r"\'e",
    CHECK: r"$\checkmark$",
    CROSS: r"$\times$",
}


def latex_escape(text: str) -> str:
    r"""Escape ``text`` for LaTeX text mode.

    The ten special characters (``\ & % $ # _ { } ~ ^``) and ``< > |`` become their text-mode commands;
    the mathematical symbols that the survey's method names and Table IV use (``⊙``, ``∂``, ``σ``, ...)
    become inline math (``$\odot$``); straight double quotes alternate between `````` and ``''``; ✓ and ✗
    become ``$\checkmark$`` (amssymb) and ``$\times$``.

    Parameters
    ----------
    text : str
        Plain text, e.g. a method name from the registry.

    Returns
    -------
    str
        Text that compiles in LaTeX text mode and prints as ``text``.

    Examples
    --------
    >>> latex_escape("Gradient ⊙ Input & d_x 100%")
    'Gradient $\\odot$ Input \\& d\\_x 100\\%'
    """
    out = []
    open_quote = True
    for char in text:
        if char == '"':
            out.append("``" if open_quote else "''")
            open_quote = not open_quote
        else:
            out.append(_LATEX_SPECIAL.get(char) or _LATEX_UNICODE.get(char, char))
    return "".join(out)


def md_escape(text: str) -> str:
    """Escape ``text`` for one cell of a Markdown pipe table (``|``, ``*``, ``_``, backticks, backslash)."""
    for char in ("\\", "|", "*", "_", "`"):
        text = text.replace(char, "\\" + char)
    return text


def ref_labels(spec: MethodSpec) -> list[str]:
    """The survey reference labels of ``spec``: ``["[71]", "[137]"]``; companion survey ``"[2nd: 39]"``.

    The survey's numbers come first, in ascending order (as the survey's Table III prints them), then the
    numbers of the companion survey (Zhang et al., 2019), marked ``2nd``.
    """
    return [f"[{r}]" for r in sorted(spec.refs)] + [f"[2nd: {r}]" for r in sorted(spec.refs_second)]


def format_error(error: float) -> str:
    """A measured error as in the report, one significant digit: ``3e-12``."""
    return f"{error:.0e}"


def mixed_md(text: str) -> str:
    """Markdown of a text with ``$...$`` math spans: text escaped, math kept for the renderer."""
    parts = text.split("$")
    return "$".join(part if i % 2 else md_escape(part) for i, part in enumerate(parts))


def mixed_tex(text: str) -> str:
    r"""LaTeX of a text with ``$...$`` math spans: text escaped with :func:`latex_escape`, math verbatim."""
    parts = text.split("$")
    return "$".join(part if i % 2 else latex_escape(part) for i, part in enumerate(parts))
