"""Generated blocks of the README: a benchmark writes its figures between two markers, never by hand.

    <!-- generated:NAME (by: COMMAND) -->
    ...text the script wrote...
    <!-- /generated:NAME -->

:func:`write_block` replaces what stands between the markers of ``NAME`` (the markers must exist: a
section is placed once by a person, its content always comes from the script).
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- generated:{re.escape(name)} \(by: [^)]*\) -->\n)(.*?)(<!-- /generated:{re.escape(name)} -->)",
                      re.S)


def read_block(name: str, readme: Path = README) -> str:
    """The text between the markers of ``name``."""
    match = _pattern(name).search(readme.read_text())
    if not match:
        raise SystemExit(f"{readme} has no block <!-- generated:{name} (by: ...) --> ... <!-- /generated:{name} -->")
    return match.group(2)


def write_block(name: str, text: str, readme: Path = README) -> None:
    """Put ``text`` between the markers of ``name`` in the README (atomically)."""
    content = readme.read_text()
    pattern = _pattern(name)
    if not pattern.search(content):
        read_block(name, readme)           # raises with the markers to add
    body = text.rstrip("\n") + "\n"
    new = pattern.sub(lambda m: m.group(1) + body + m.group(3), content, count=1)
    tmp = readme.with_name(f".{readme.name}.tmp")
    tmp.write_text(new)
    tmp.replace(readme)
