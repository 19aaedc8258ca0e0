"""Seeded, deterministic training of every model variant: the loop (:mod:`.trainer`), the penalties of the
model variants (:mod:`.penalties`) and the run-time settings every job shares (:mod:`.runtime`).

Import from the submodules: this package imports none of them, so that a job that only needs the
run-time settings does not depend on the training loop's code (:mod:`nnxai.codedeps`).
"""
