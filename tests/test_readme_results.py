"""No result in the README is typed by hand: each results block is a section of the default run's results
document (``nnxai report results``), kept as ``paper/results-default.md`` by ``benchmarks/findings.py``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nnxai.report.results import SECTIONS, section_of

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SNAPSHOT = ROOT / "paper" / "results-default.md"


def block(name: str) -> str:
    match = re.search(rf"<!-- generated:{re.escape(name)} \(by: [^)]*\) -->\n(.*?)<!-- /generated:{re.escape(name)} -->",
                      README.read_text(), re.S)
    assert match, f"README.md has no generated block {name!r}"
    return match.group(1).rstrip("\n")


@pytest.mark.parametrize("key", [key for key, _, _ in SECTIONS])
def test_readme_results_block_is_the_generated_section(key):
    assert SNAPSHOT.is_file(), "paper/results-default.md is missing: run benchmarks/findings.py --root RUN"
    assert block(f"default-{key}") == section_of(SNAPSHOT.read_text(), key).rstrip("\n"), (
        f"README block default-{key} differs from paper/results-default.md: regenerate both with "
        "benchmarks/findings.py --root RUN, never edit either by hand")


def test_every_number_of_a_results_block_is_in_the_document():
    # belt and braces: a number edited into a block (and only there) is caught even if the markers moved
    document = SNAPSHOT.read_text()
    for key, _, _ in SECTIONS:
        for number in re.findall(r"\d+\.\d+", block(f"default-{key}")):
            assert number in document, f"{number} of README block default-{key} is not in {SNAPSHOT.name}"
