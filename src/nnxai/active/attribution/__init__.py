"""Active methods whose own explanation is of type `attribution` (survey Table III, active rows)."""
