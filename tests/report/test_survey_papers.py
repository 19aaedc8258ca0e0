"""The survey's paper space (``nnxai.report.survey_papers``), its table, Fig. 2 drawn from it, and the
survey's legend, footnotes and notes in Table III.

The expected values here are transcribed by hand from the survey's text
(``shared/papers/survey-neural-network-interpretability.txt``: Table III, Sections III-A to III-D), not
read from the module under test.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from report_helpers import braces_balanced, md_rows, outside_math

from nnxai import registry
from nnxai.report import survey_papers, taxonomy3d
from nnxai.report.survey_papers import PAPERS, SurveyPaper
from nnxai.report.survey_papers_table import write_survey_papers
from nnxai.report.table3 import write_table3
from nnxai.taxonomy import Engagement, ExplanationType, MethodSpec, Scope

P, A = Engagement.PASSIVE, Engagement.ACTIVE
RULE, HS, ATT, EX = (ExplanationType.RULE, ExplanationType.HIDDEN_SEMANTICS, ExplanationType.ATTRIBUTION,
                     ExplanationType.EXAMPLE)
L, S, G = Scope.LOCAL, Scope.SEMI_LOCAL, Scope.GLOBAL

# The survey's Table III, cell by cell, as reference numbers ("[93]–[98]" and "[104]–[107]" expanded;
# a number printed twice in one cell, [72] in passive/attribution/local, once).
TABLE_III = {
    (P, RULE, L): {69, 77, 78, 79},                      # CEM, CDRPs, CVE², DACE
    (P, RULE, S): {65, 80},                              # Anchors, interpretable partial substitution
    (P, RULE, G): {81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92},  # KT ... Global model on CEM
    (P, HS, G): {71, 93, 94, 95, 96, 97, 98, 21, 99, 100},  # Visualization, dissection, Net2Vec, LCA
    (P, ATT, L): {20, 101, 71, 72, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111},
    (P, ATT, S): {112, 113, 114, 110, 68},               # DeepLIFT, LRP, IG, Feature selector, MAME
    (P, ATT, G): {110, 63, 115, 67, 68, 116},            # Feature selector, TCAV, ACE, SpRAy³, MAME, DeepConsensus
    (P, EX, L): {73, 117},                               # Influence functions, representer points
    (A, RULE, S): {118}, (A, RULE, G): {119},
    (A, HS, G): {70},
    (A, ATT, L): {120, 121}, (A, ATT, G): {122},
    (A, EX, G): {76, 123},
}
# The papers the text of Section III classifies without Table III listing them.
TEXT_PLACED = {
    124: (P, RULE, L),   # III-A1: "A similar kind of methods is counterfactual explanations [124]." (CEM's kind)
    131: (P, RULE, G),   # III-A2b: "extract fuzzy logic from trained neural networks [87], [88], [131]"
    135: (P, HS, G),     # III-B1: "Minematsu et al. [135], [136] inspected the behaviour of ... a DNN"
    136: (P, HS, G),
    137: (P, ATT, L),    # III-C1a: "Baehrens et al. [137] use it [the gradient] to explain the predictions"
    138: (P, ATT, L),    # III-C1a: "Guided Grad-CAM is an extension of CAM [138]"
    146: (P, EX, L),     # III-D: "most similar (in terms of latent representations) [146]. This is local"
    147: (P, EX, G),     # III-D: "representative samples ... global interpretability ... [147]"
}
# Points per cell of Fig. 2, derived by hand: Table III's papers above plus the text-placed ones.
#   passive/rule/local        CEM, CDRPs, CVE, DACE (4) + [124]                          = 5
#   passive/rule/semi-local   Anchors, partial substitution                               = 2
#   passive/rule/global       [81]-[92] (12: KT, MofN, NeuroRule, NeuroLinear, GRG, Gyan,
#                             the two fuzzy [87], [88], Trepan, [90], DecText, CEM global) + [131] = 13
#   passive/hidden/global     [71], [93]-[98] (7), [21], [99], [100] (10) + [135], [136]  = 12
#   passive/attribution/local LIME, MAPLE, [71], [72], [102], [103], [104]-[107] (4),
#                             [108], [109] ([72] again: not counted), [110], [111] (14) + [137], [138] = 16
#   passive/attribution/semi  [112], [113], [114], [110], [68]                           = 5
#   passive/attribution/glob. [110], [63], [115], [67], [68], [116]                       = 6
#   passive/example/local     [73], [117] + [146]                                         = 3
#   passive/example/global    [147] (Table III: "—")                                       = 1
#   active: rule semi [118] 1, rule global [119] 1, hidden global [70] 1, attribution local [120], [121] 2,
#           attribution global [122] 1, example global [76], [123] 2; the other 13 cells 0.
EXPECTED_COUNTS = {
    (P, RULE, L): 5, (P, RULE, S): 2, (P, RULE, G): 13,
    (P, HS, G): 12,
    (P, ATT, L): 16, (P, ATT, S): 5, (P, ATT, G): 6,
    (P, EX, L): 3, (P, EX, G): 1,
    (A, RULE, S): 1, (A, RULE, G): 1, (A, HS, G): 1, (A, ATT, L): 2, (A, ATT, G): 1, (A, EX, G): 2,
}
# Table III's footnotes, legend and note, verbatim.
SURVEY_STRINGS = (
    "First-order rule", "Fuzzy rule",
    "Some attribution methods (e.g., DeconvNet, Guided Backprop) arguably have certain non-locality "
    "because of the rectification operation.",
    "Short for counterfactual visual explanations",
    "SpRAy is flexible to provide semi-local or global explanations by clustering local (individual) "
    "attributions.",
    "No explicit methods but many in the below cell can be applied here.",
)


def _refs_in(cell) -> set[int]:
    return {e.ref for e in PAPERS if cell in e.cells}


# ----------------------------------------------------------------------------- the data
def test_survey_papers_one_entry_per_paper_and_no_cell_twice():
    refs = [e.ref for e in PAPERS]
    assert len(refs) == len(set(refs)) == 67
    for entry in PAPERS:
        assert entry.cells and len(set(entry.cells)) == len(entry.cells), entry.ref
        assert f"[{entry.ref}]" in entry.quote or entry.ref in (93, 94, 95, 96, 97, 98, 104, 105, 106, 107), entry.ref


def test_survey_papers_table3_transcribed_cell_by_cell():
    for cell in survey_papers.all_cells():
        assert {e.ref for e in PAPERS if e.from_table3 and cell in e.cells} == TABLE_III.get(cell, set()), cell


def test_survey_papers_text_placed_papers():
    assert {e.ref: e.cells for e in PAPERS if not e.from_table3} == {r: (c,) for r, c in TEXT_PLACED.items()}
    assert all(e.source.startswith("Sec. III-") and e.source.endswith(" text") for e in PAPERS if not e.from_table3)


def test_survey_cell_counts_derived_by_hand():
    counts = survey_papers.cell_counts()
    assert len(counts) == 24
    assert counts == {c: EXPECTED_COUNTS.get(c, 0) for c in survey_papers.all_cells()}
    assert sum(counts.values()) == 71


def test_survey_multi_cell_papers_and_spray():
    assert survey_papers.paper(71).cells == ((P, HS, G), (P, ATT, L))
    assert set(survey_papers.paper(110).cells) == {(P, ATT, L), (P, ATT, S), (P, ATT, G)}
    assert set(survey_papers.paper(68).cells) == {(P, ATT, S), (P, ATT, G)}
    assert survey_papers.paper(67).cells == ((P, ATT, G),)  # SpRAy: Table III's Global cell only
    assert "footnote 3" in survey_papers.paper(67).quote
    multi = {e.ref for e in PAPERS if len(e.cells) > 1}
    assert multi == {71, 110, 68}


def test_survey_not_placed_are_not_papers():
    listed = [r for refs in survey_papers.NOT_PLACED for r in refs]
    assert len(listed) == len(set(listed))
    assert not set(listed) & {e.ref for e in PAPERS}
    assert 139 in listed and 74 in listed


def test_survey_papers_cited_by_a_method_share_its_engagement_and_type():
    """Every catalogue method citing a placed paper sits in the paper's (engagement, type) somewhere, so a
    method's implementation colours a point of its own kind (registry against the survey)."""
    placed = {e.ref: e for e in PAPERS}
    for spec in registry.specs():
        for ref in spec.refs:
            if ref in placed:
                assert (spec.engagement, spec.explanation_type) in {c[:2] for c in placed[ref].cells}, (spec.id, ref)


def test_survey_method_ids_come_from_the_registry(implemented, monkeypatch):
    implemented("gradient")
    ref71 = survey_papers.paper(71)
    assert survey_papers.method_ids(ref71, (P, ATT, L)) == ["gradient"]
    assert survey_papers.method_ids(ref71, (P, HS, G)) == ["activation_max"]
    assert survey_papers.method_ids(ref71, (P, HS, G), implemented_only=True) == []
    new = MethodSpec(id="zz_counterfactual", name="Counterfactual", description="test", engagement=P,
                     explanation_type=RULE, scopes=(L,), refs=(124,))
    monkeypatch.setitem(registry._SPECS, new.id, new)
    implemented("zz_counterfactual")
    (point,) = [p for p in taxonomy3d.points() if p.ref == 124]
    assert point.implemented and point.method_ids == ("zz_counterfactual",) and not point.from_table3
    assert new not in survey_papers.uncovered_methods()
    assert {s.id for s in survey_papers.uncovered_methods()} >= {"gradient_x_input", "smoothgrad", "deepred"}


# ----------------------------------------------------------------------------- Fig. 2 from the data
def test_taxonomy_survey_points_one_per_paper_and_cell():
    pts = taxonomy3d.points()
    per_cell = Counter((p.ref, p.cell) for p in pts)
    assert max(per_cell.values()) == 1
    assert set(per_cell) == {(e.ref, c) for e in PAPERS for c in e.cells}
    assert Counter(p.cell for p in pts) == Counter({c: n for c, n in EXPECTED_COUNTS.items()})


@pytest.mark.parametrize("ref", [72, 103, 105, 108])
def test_taxonomy_survey_papers_listed_twice_are_one_point(ref):
    # Before: [72] (DeconvNet, occlusion), [103] (Grad-CAM, Guided Grad-CAM), [105] (KernelSHAP, DeepSHAP)
    # and [108] (occlusion, prediction difference) were each two points of passive/attribution/local.
    assert [p.cell for p in taxonomy3d.points() if p.ref == ref] == [(P, ATT, L)]


def test_taxonomy_survey_spray_only_where_the_survey_puts_it():
    assert [p.cell for p in taxonomy3d.points() if p.ref == 67] == [(P, ATT, G)]
    assert not [p for p in taxonomy3d.points() if p.cell == (P, ATT, S) and p.ref == 67]


def test_taxonomy_survey_duplicates_in_the_data_still_give_one_point():
    twice = SurveyPaper(72, "DeconvNet", ((P, ATT, L), (P, ATT, L)), "Table III", "DeconvNet [72]")
    again = SurveyPaper(72, "Sensitivity analysis", ((P, ATT, L),), "Table III", "Sensitivity analysis [72]")
    assert len(taxonomy3d.points(entries=(twice, again))) == 1


def test_taxonomy_survey_colours_follow_the_registry_per_cell(implemented):
    implemented("gradient", "l2x", "deepred", "spray")
    done = {(p.ref, p.cell) for p in taxonomy3d.points() if p.implemented}
    # gradient cites [71] and [137] (attribution, not [71]'s hidden-semantics point); l2x [110] in three
    # cells; spray [67] at its one survey cell; deepred cites only the companion survey: no point.
    assert done == {(71, (P, ATT, L)), (137, (P, ATT, L)), (110, (P, ATT, L)), (110, (P, ATT, S)),
                    (110, (P, ATT, G)), (67, (P, ATT, G))}


# ----------------------------------------------------------------------------- the table
def test_survey_papers_table_lists_every_paper(tmp_path, implemented):
    implemented("gradient", "activation_max", "kernel_shap")  # cited in catalogue order below
    md_path, tex_path = write_survey_papers(tmp_path)
    assert [p.name for p in (md_path, tex_path)] == ["survey_papers.md", "survey_papers.tex"]
    md = md_path.read_text()
    rows = md_rows(md)
    assert [r[0] for r in rows] == [f"[{r}]" for r in sorted(e.ref for e in PAPERS)]
    by_ref = {r[0]: r for r in rows}
    assert by_ref["[71]"][5] == "✓ activation\\_max, gradient"
    assert by_ref["[105]"][5] == "✓ kernel\\_shap (not implemented: deep\\_shap)"
    assert by_ref["[106]"][5] == "no (catalogue: dasp)"
    assert by_ref["[131]"][5] == "no" and by_ref["[131]"][3] == "Sec. III-A2b text"
    assert by_ref["[67]"][2] == "passive / attribution / global"
    assert "passive / attribution / local: 16" in md and "71 points, 67 papers" in md
    assert "gradient\\_x\\_input ([139])" in md  # a method with no point in Fig. 2 is named


def test_survey_papers_table_tex_is_sound(tmp_path, implemented):
    implemented("lrp")
    tex = write_survey_papers(tmp_path)[1].read_text()
    assert braces_balanced(tex) and r"\begin{longtable}" in tex and r"\end{longtable}" in tex
    body = "\n".join(ln for ln in outside_math(tex).splitlines() if not ln.startswith("%"))
    body = re.sub(r"\\label\{[^}]*\}", "", body)
    assert "_" not in body.replace(r"\_", "") and "^" not in body and "•" not in body and "²" not in body
    assert tex.count("\n{}[") == len(PAPERS)  # each row guarded against "\\" reading "[k]" as its argument
    assert r"\item{} [" in tex and r"Gyan\textsuperscript{FO} [86]" in tex


# ----------------------------------------------------------------------------- Table III's own notes
def test_table3_carries_the_survey_footnotes_legend_and_note(tmp_path, implemented):
    implemented()  # none: entries printed plain, so the marks follow the names directly
    md_path, tex_path = write_table3(tmp_path)
    md, tex = md_path.read_text(), tex_path.read_text()
    for text in SURVEY_STRINGS:
        assert text in md and text in tex, text
    assert "FO: First-order rule" in md and "FZ: Fuzzy rule" in md
    assert "(\\*No explicit methods but many in the below cell can be applied here.)" in md
    # LaTeX: the marks sit where the survey sets them.
    assert tex.count(r"Attribution\textsuperscript{1}") == 1  # the passive row only
    assert r"CVE\textsuperscript{2} [78]" in tex and r"SpRAy\textsuperscript{3} [67]" in tex
    assert r"\textsuperscript{FO} [86]" in tex and r"\textsuperscript{FZ} [87], [88]" in tex
    assert r"\emph{(*No explicit methods but many in the below cell can be applied here.)}" in tex


def test_table3_names_where_the_registry_departs_from_the_survey(tmp_path):
    md = write_table3(tmp_path)[0].read_text()
    # The catalogue runs SpRAy at the semi-local scope too; the survey's Table III gives [67] Global only.
    assert ("SpRAy is listed under passive / attribution / semi-local by this project's registry; the survey "
            "places [67]: passive / attribution / global") in md
