"""The explanation records of the survey's explanation types (concept scores being global attribution), each
knowing how to save and load itself."""

from nnxai.explanations.records import (
    NPZ_RECORD_TYPES, RECORD_TYPES, RULE_INFERENCE, AttributionMap, ConceptScores, Examples, Explanation, LocalRules,
    RuleSet, SurrogateModel, UnitConcepts, UnitImages, load_explanation,
)

__all__ = ["NPZ_RECORD_TYPES", "RECORD_TYPES", "RULE_INFERENCE", "AttributionMap", "ConceptScores", "Examples",
           "Explanation", "LocalRules", "RuleSet", "SurrogateModel", "UnitConcepts", "UnitImages", "load_explanation"]
