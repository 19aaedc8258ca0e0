"""Seeded, deterministic training of every model variant."""

from nnxai.training.trainer import TrainConfig, train_model

__all__ = ["TrainConfig", "train_model"]
