"""Active methods whose own explanation is of type `rule` (survey Table III, active rows)."""
