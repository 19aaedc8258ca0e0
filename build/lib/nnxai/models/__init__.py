"""Networks, model variants and checkpoints."""

from nnxai.models.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from nnxai.models.networks import ARCHITECTURES, MLP, ConvNet, build_network
from nnxai.models.variants import VARIANTS, Variant, variant

__all__ = ["ARCHITECTURES", "CheckpointError", "ConvNet", "MLP", "VARIANTS", "Variant", "build_network",
           "load_model", "read_checkpoint", "save_checkpoint", "variant"]
