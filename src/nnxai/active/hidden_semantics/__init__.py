"""Active methods whose own explanation is of type `hidden_semantics` (survey Table III, active rows)."""
