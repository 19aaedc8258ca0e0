"""The survey's own paper space: every paper that Zhang, Tiňo, Leonardis & Tang (2021) place in the taxonomy.

Fig. 2 of the survey plots "the distribution of the interpretability papers in the 3D space of our
taxonomy", and Section II says that "Table III is another representation of all the reviewed
interpretability approaches".  The papers placed are those of Table III and those the text of Section III
classifies without listing them in Table III (e.g. counterfactual explanations [124], "A similar kind of
methods", in Sec. III-A1).  Each entry below is one paper (one reference number of the survey), with every
cell the survey gives it, where the survey says so, a short quote locating it and, where the text left a
choice, a ``note`` with the choice made.  Papers cited in Section III but not placed (surveys, evaluation
work, background algorithms) are in :data:`NOT_PLACED`, with the reason.

This is a transcription of the survey, so it is typed here; which methods of this project implement a
paper is *not* typed: it is read from the registry (:func:`method_ids`: the specs whose ``refs`` cite it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from nnxai import registry
from nnxai.taxonomy import Engagement, ExplanationType, MethodSpec, Scope

Cell = tuple[Engagement, ExplanationType, Scope]

TABLE3 = "Table III"  #: the source of a placement read from the survey's Table III

_P, _A = Engagement.PASSIVE, Engagement.ACTIVE
_RULE, _HS = ExplanationType.RULE, ExplanationType.HIDDEN_SEMANTICS
_ATT, _EX = ExplanationType.ATTRIBUTION, ExplanationType.EXAMPLE
_L, _S, _G = Scope.LOCAL, Scope.SEMI_LOCAL, Scope.GLOBAL


@dataclass(frozen=True)
class SurveyPaper:
    """One paper of the survey's taxonomy: reference ``ref`` of the survey, in each of ``cells``."""

    ref: int
    name: str       #: the survey's name for it (Table III's entry, or the text's words)
    cells: tuple[Cell, ...]
    source: str     #: where the survey places it: "Table III" or "Sec. III-x text"
    quote: str      #: the words of the survey that place it
    note: str = ""  #: a choice made where the survey's text is ambiguous, with its quote

    @property
    def from_table3(self) -> bool:
        return self.source == TABLE3


def _t3(ref: int, name: str, *cells: Cell, quote: str, note: str = "") -> SurveyPaper:
    return SurveyPaper(ref, name, cells, TABLE3, quote, note)


_NON_LOCALITY = ("Table III's footnote 1 on the attribution row: \"Some attribution methods (e.g., DeconvNet, "
                 "Guided Backprop) arguably have certain non-locality because of the rectification "
                 "operation.\"; Table III still lists it under Local only, so it is placed there only.")

#: The papers, cell by cell in the order of Table III (passive, then active; rule ... example; local ...
#: global), each paper once: where Table III lists a paper in several cells, the first cell's row holds all.
PAPERS: tuple[SurveyPaper, ...] = (
    # ---- passive, rule (Sec. III-A)
    _t3(69, "CEM", (_P, _RULE, _L), quote="CEM [69]"),
    _t3(77, "CDRPs", (_P, _RULE, _L), quote="CDRPs [77]"),
    _t3(78, "CVE", (_P, _RULE, _L), quote="CVE² [78]; footnote 2: \"Short for counterfactual visual explanations\""),
    _t3(79, "DACE", (_P, _RULE, _L), quote="DACE [79]"),
    SurveyPaper(124, "Counterfactual explanations", ((_P, _RULE, _L),), "Sec. III-A1 text",
                "\"A similar kind of methods is counterfactual explanations [124].\" (after CEM [69])",
                note="Sec. III-A1 is titled \"(Semi-)local\"; placed Local, as CEM [69], of which it is \"a similar "
                     "kind\", and the counterfactual methods CVE [78] and DACE [79] are in Table III."),
    _t3(65, "Anchors", (_P, _RULE, _S), quote="Anchors [65]"),
    _t3(80, "Interpretable partial substitution", (_P, _RULE, _S), quote="Interpretable partial substitution [80]"),
    _t3(81, "KT", (_P, _RULE, _G), quote="KT [81]"),
    _t3(82, "MofN", (_P, _RULE, _G), quote="MofN [82]"),
    _t3(83, "NeuroRule", (_P, _RULE, _G), quote="NeuralRule [83]",
        note="Table III prints \"NeuralRule [83]\"; Sec. III-A2a and the bibliography name it NeuroRule."),
    _t3(84, "NeuroLinear", (_P, _RULE, _G), quote="NeuroLinear [84]"),
    _t3(85, "GRG", (_P, _RULE, _G), quote="GRG [85]"),
    _t3(86, "Gyan", (_P, _RULE, _G), quote="Gyan^FO [86]; legend: \"FO First-order rule\""),
    _t3(87, "Fuzzy rules (Benitez et al.)", (_P, _RULE, _G), quote="•^FZ [87], [88]; legend: \"FZ Fuzzy rule\"",
        note="Table III gives [87], [88] no name (•); named from Sec. III-A2b: \"extract fuzzy logic from "
             "trained neural networks [87], [88], [131]\"."),
    _t3(88, "Fuzzy rules (Castro et al.)", (_P, _RULE, _G), quote="•^FZ [87], [88]; legend: \"FZ Fuzzy rule\"",
        note="Unnamed (•) in Table III, as [87]."),
    _t3(89, "Trepan", (_P, _RULE, _G), quote="Trepan [89]"),
    _t3(90, "Decision-tree extraction (Krishnan et al.)", (_P, _RULE, _G), quote="• [90]",
        note="Unnamed (•) in Table III; named from Sec. III-A2b: \"Example work of decision tree extraction "
             "(from neural networks) can be found in references [89]–[91].\""),
    _t3(91, "DecText", (_P, _RULE, _G), quote="DecText [91]"),
    _t3(92, "Global model on CEM", (_P, _RULE, _G), quote="Global model on CEM [92]"),
    SurveyPaper(131, "Fuzzy-rule extraction", ((_P, _RULE, _G),), "Sec. III-A2b text",
                "\"There are also some approaches attempting to extract fuzzy logic from trained neural networks "
                "[87], [88], [131].\""),
    # ---- passive, hidden semantics (Sec. III-B; Table III: Local "(*No explicit methods ...)", Semi-local "—")
    _t3(71, "Visualization; Partial derivatives", (_P, _HS, _G), (_P, _ATT, _L),
        quote="Visualization [71], [93]–[98] (hidden semantics, global); Partial derivatives [71] "
              "(attribution, local)"),
    _t3(93, "Visualization (activation maximization)", (_P, _HS, _G), quote="Visualization [71], [93]–[98]"),
    _t3(94, "Visualization (blurring and deblurring)", (_P, _HS, _G), quote="Visualization [71], [93]–[98]"),
    _t3(95, "Visualization (total variation)", (_P, _HS, _G), quote="Visualization [71], [93]–[98]"),
    _t3(96, "Visualization (deep visualization)", (_P, _HS, _G), quote="Visualization [71], [93]–[98]"),
    _t3(97, "Visualization (generator prior)", (_P, _HS, _G), quote="Visualization [71], [93]–[98]"),
    _t3(98, "Visualization (feature visualization)", (_P, _HS, _G), quote="Visualization [71], [93]–[98]"),
    _t3(21, "Network dissection", (_P, _HS, _G), quote="Network dissection [21]"),
    _t3(99, "Net2Vec", (_P, _HS, _G), quote="Net2Vec [99]"),
    _t3(100, "Linguistic correlation analysis", (_P, _HS, _G), quote="Linguistic correlation analysis [100]"),
    SurveyPaper(135, "Visualization of a change-detection DNN (Minematsu et al.)", ((_P, _HS, _G),),
                "Sec. III-B1 text", "\"Minematsu et al. [135], [136] inspected the behaviour of the first and "
                "last layers of a DNN used for change detection\"",
                note="An application of the visualizations above (\"researchers can get some insights from these "
                     "visual interpretations. For example, ...\"), in the subsection \"Passive, Hidden Semantics "
                     "as Explanation, Global\"; placed there."),
    SurveyPaper(136, "Visualization of a change-detection DNN (Minematsu et al.)", ((_P, _HS, _G),),
                "Sec. III-B1 text", "\"Minematsu et al. [135], [136] inspected the behaviour of the first and "
                "last layers of a DNN used for change detection\"", note="As [135]."),
    # ---- passive, attribution (Sec. III-C)
    _t3(20, "LIME", (_P, _ATT, _L), quote="LIME [20]"),
    _t3(101, "MAPLE", (_P, _ATT, _L), quote="MAPLE [101]"),
    _t3(72, "DeconvNet; Sensitivity analysis (occlusion)", (_P, _ATT, _L),
        quote="DeconvNet [72]; Sensitivity analysis [72], [108], [109] (both Local)",
        note="Listed twice in the Local cell (DeconvNet, Sensitivity analysis): one paper, one point. "
             + _NON_LOCALITY),
    _t3(102, "Guided backprop", (_P, _ATT, _L), quote="Guided backprop [102]", note=_NON_LOCALITY),
    _t3(103, "Guided Grad-CAM", (_P, _ATT, _L), quote="Guided Grad-CAM [103]",
        note="The Grad-CAM paper; Table III names its guided variant: one paper, one point."),
    _t3(104, "Shapley values (sampling)", (_P, _ATT, _L), quote="Shapley values [104]–[107]"),
    _t3(105, "Shapley values (SHAP)", (_P, _ATT, _L), quote="Shapley values [104]–[107]"),
    _t3(106, "Shapley values (DASP)", (_P, _ATT, _L), quote="Shapley values [104]–[107]"),
    _t3(107, "Shapley values (causal)", (_P, _ATT, _L), quote="Shapley values [104]–[107]"),
    _t3(108, "Sensitivity analysis (prediction difference)", (_P, _ATT, _L),
        quote="Sensitivity analysis [72], [108], [109]"),
    _t3(109, "Sensitivity analysis", (_P, _ATT, _L), quote="Sensitivity analysis [72], [108], [109]"),
    _t3(110, "Feature selector", (_P, _ATT, _L), (_P, _ATT, _S), (_P, _ATT, _G),
        quote="Feature selector [110] in each of the Local, Semi-local and Global cells"),
    _t3(111, "Bias attribution", (_P, _ATT, _L), quote="Bias attribution [111]"),
    SurveyPaper(137, "Gradients (Baehrens et al.)", ((_P, _ATT, _L),), "Sec. III-C1a text",
                "\"Baehrens et al. [137] use it [the gradient] to explain the predictions of Gaussian Process "
                "Classification (GPC), k-NN and SVM.\"; Table IV: \"Gradient [71], [137]\"",
                note="Sec. III-C1 is titled \"(Semi-)local\"; placed Local, as Partial derivatives [71], which "
                     "Table IV cites beside it: plain gradients use no reference input, and the text gives "
                     "semi-local only to \"attribution methods requiring a reference point\"."),
    SurveyPaper(138, "CAM", ((_P, _ATT, _L),), "Sec. III-C1a text",
                "\"(Guided Grad-CAM is an extension of CAM [138] which requires a special global average "
                "pooling layer.)\"",
                note="Placed Local, as its extension Guided Grad-CAM [103] in Table III (no reference input)."),
    _t3(112, "DeepLIFT", (_P, _ATT, _S), quote="DeepLIFT [112]"),
    _t3(113, "LRP", (_P, _ATT, _S), quote="LRP [113]"),
    _t3(114, "Integrated gradients", (_P, _ATT, _S), quote="Integrated gradients [114]"),
    _t3(68, "MAME", (_P, _ATT, _S), (_P, _ATT, _G), quote="MAME [68] in both the Semi-local and Global cells"),
    _t3(63, "TCAV", (_P, _ATT, _G), quote="TCAV [63]"),
    _t3(115, "ACE", (_P, _ATT, _G), quote="ACE [115]"),
    _t3(67, "SpRAy", (_P, _ATT, _G),
        quote="SpRAy³ [67] (Global cell only); footnote 3: \"SpRAy is flexible to provide semi-local or global "
              "explanations by clustering local (individual) attributions.\"",
        note="Global only: Table III lists it in the Global cell alone and Sec. III-C2 (\"Passive, Attribution "
             "as Explanation, Global\") discusses it; footnote 3 states a flexibility, not a second cell."),
    _t3(116, "DeepConsensus", (_P, _ATT, _G), quote="DeepConsensus [116]"),
    # ---- passive, by example (Sec. III-D)
    _t3(73, "Influence functions", (_P, _EX, _L), quote="Influence functions [73]"),
    _t3(117, "Representer point selection", (_P, _EX, _L), quote="Representer point selection [117]"),
    SurveyPaper(146, "Most similar examples (latent space)", ((_P, _EX, _L),), "Sec. III-D text",
                "\"find examples that the model considers to be most similar (in terms of latent "
                "representations) [146]. This is local interpretability\""),
    SurveyPaper(147, "Representative samples (prototypes and criticism)", ((_P, _EX, _G),), "Sec. III-D text",
                "\"we can also seek a set of representative samples within a class or for more classes that "
                "provides global interpretability. A general approach is presented in [147].\""),
    # ---- active (Sec. IV)
    _t3(118, "Regional tree regularization", (_A, _RULE, _S), quote="Regional tree regularization [118]"),
    _t3(119, "Tree regularization", (_A, _RULE, _G), quote="Tree regularization [119]"),
    _t3(70, "\"One filter, one concept\"", (_A, _HS, _G), quote="“One filter, one concept” [70]"),
    _t3(120, "ExpO", (_A, _ATT, _L), quote="ExpO [120]"),
    _t3(121, "DAPr", (_A, _ATT, _L), quote="DAPr [121]"),
    _t3(122, "Dual-net (feature importance)", (_A, _ATT, _G), quote="Dual-net (feature importance) [122]"),
    _t3(76, "Network with a prototype layer", (_A, _EX, _G), quote="Network with a prototype layer [76]"),
    _t3(123, "ProtoPNet", (_A, _EX, _G), quote="ProtoPNet [123]"),
)

#: References that Section II/III cite near a placement but that the survey does not place in a cell, and why.
NOT_PLACED: dict[tuple[int, ...], str] = {
    (19, 66): "Sec. II, on the scope axis only (\"several semi-local explanation methods [65], [66]\", \"fuse "
              "local explanations into global ones ... [19], [67], [68]\"): no explanation type is given",
    (74,): "Table II and Sec. IV-B: the \"receptive fields\" used to show the filters of [70]; neither Table III "
           "nor Section III places it",
    (58, 125, 126, 127): "overviews and surveys (\"a good summary of the rule extraction techniques\")",
    (128, 129, 130): "classic learners the pedagogical rule extractors use (CART, C4.5, LGG), not interpretation "
                     "methods",
    (132, 133, 134): "generative adversarial networks, the generator prior of [97]",
    (139,): "Sec. III-C1a: an analysis of other methods (\"LRP and DeepLIFT are essentially computing "
            "backpropagation for modified gradient functions\"), the source Table IV is adapted from; not "
            "presented as a method",
    (75, 140, 141, 142, 143): "evaluation of attribution methods (sanity checks, adversarial attributions, "
                              "input invariance), Sec. III-C1a and V",
    (144, 145): "background: word embeddings, the Shapley value of game theory (1953)",
}


def papers() -> tuple[SurveyPaper, ...]:
    """Every paper the survey places in its taxonomy, in the order of Table III (see :data:`PAPERS`)."""
    return PAPERS


def paper(ref: int) -> SurveyPaper:
    """The paper with the survey's reference number ``ref``."""
    for entry in PAPERS:
        if entry.ref == ref:
            return entry
    raise KeyError(f"reference [{ref}] is not placed in the survey's taxonomy")


def all_cells() -> list[Cell]:
    """The 24 cells of the taxonomy (2 engagements × 4 explanation types × 3 scopes), in Table III order."""
    return [(e, t, s) for e in Engagement for t in ExplanationType for s in Scope]


def cell_counts(entries: tuple[SurveyPaper, ...] = PAPERS) -> dict[Cell, int]:
    """The number of papers in each of the 24 cells (empty cells included): the points of Fig. 2."""
    counts = Counter(cell for entry in entries for cell in set(entry.cells))
    return {cell: counts.get(cell, 0) for cell in all_cells()}


def method_ids(entry: SurveyPaper, cell: Cell | None = None, specs: list[MethodSpec] | None = None,
               implemented_only: bool = False) -> list[str]:
    """The registered methods citing the paper (its number in their ``refs``), in catalogue order.

    With ``cell``, only those of the cell's engagement and explanation type: reference [71] is both a
    visualization (hidden semantics) and partial derivatives (attribution), and the two are different
    methods here.  The scope is not compared, since a method may be run at more scopes than the survey
    gives the paper.  ``implemented_only`` keeps the methods with an implementation registered.
    """
    specs = registry.specs() if specs is None else specs
    out = [s.id for s in specs if entry.ref in s.refs
           and (cell is None or (s.engagement, s.explanation_type) == cell[:2])]
    return [m for m in out if registry.is_implemented(m)] if implemented_only else out


def uncovered_methods(specs: list[MethodSpec] | None = None) -> list[MethodSpec]:
    """The registered methods that cite no paper of the survey's taxonomy (companion-survey methods, [139]):
    they have no point in Fig. 2."""
    specs = registry.specs() if specs is None else specs
    placed = {entry.ref for entry in PAPERS}
    return [s for s in specs if not placed & set(s.refs)]


def cell_label(cell: Cell) -> str:
    """``"passive / attribution / local"``."""
    engagement, etype, scope = cell
    return f"{engagement.value} / {etype.label.lower()} / {scope.label.lower()}"
