"""Active methods whose own explanation is of type `example` (survey Table III, active rows)."""
