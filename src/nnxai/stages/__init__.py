"""The pipeline's stages, one module each (:mod:`nnxai.pipeline` gathers them).

A job imports only its own stage's module, so its code dependencies (:mod:`nnxai.codedeps`) are that
stage's: editing the metrics does not retrain a model.
"""
