"""Passive explanation by example (survey Sec. III-D): the training examples that explain a prediction
(representer points [117], ...)."""
