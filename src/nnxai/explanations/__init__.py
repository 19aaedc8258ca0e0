"""The four explanation records of the survey's explanation types, each knowing how to save and load itself."""

from nnxai.explanations.records import (
    RECORD_TYPES, AttributionMap, Examples, Explanation, RuleSet, UnitConcepts, load_explanation,
)

__all__ = ["RECORD_TYPES", "AttributionMap", "Examples", "Explanation", "RuleSet", "UnitConcepts",
           "load_explanation"]
