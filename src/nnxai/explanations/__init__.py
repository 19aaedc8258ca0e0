"""The explanation records of the survey's explanation types (concept scores being global attribution), each
knowing how to save and load itself."""

from nnxai.explanations.records import (
    RECORD_TYPES, RULE_INFERENCE, AttributionMap, ConceptScores, Examples, Explanation, LocalRules, RuleSet,
    UnitConcepts, load_explanation,
)

__all__ = ["RECORD_TYPES", "RULE_INFERENCE", "AttributionMap", "ConceptScores", "Examples", "Explanation",
           "LocalRules", "RuleSet", "UnitConcepts", "load_explanation"]
