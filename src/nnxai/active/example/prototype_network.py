"""Autoencoder with a prototype layer (survey ref. [76]; Li, Liu, Chen & Rudin, AAAI 2018, "Deep learning
for case-based reasoning through prototypes: a neural network that explains its predictions").

The network (paper Sec. 2, Fig. 1): an encoder ``f``, a decoder ``g`` that maps latent vectors back to
images, a prototype layer ``p`` holding ``m`` prototype vectors ``p_j`` of the latent space, and a linear
layer ``w`` over the squared distances

    p(z) = [||z - p_1||², ..., ||z - p_m||²]ᵀ,    logits = w(p(f(x))),

trained on (paper Eq. 1)

    L = E(h∘f, D) + λ R(g∘f, D) + λ1 R1(p_1..p_m, D) + λ2 R2(p_1..p_m, D),
    R  = (1/n) Σ_i ||(g∘f)(x_i) - x_i||²                      (reconstruction, summed over pixels)
    R1 = (1/m) Σ_j min_i ||p_j - f(x_i)||²                     (every prototype near an encoded input)
    R2 = (1/n) Σ_i min_j ||f(x_i) - p_j||²                     (every encoded input near a prototype)

with ``E`` the cross-entropy and the paper's weights λ = λ1 = λ2 = 0.05 (config ``active_params``).  The
prototypes are read by decoding them, ``g(p_j)`` (paper Sec. 2.2, Fig. 2).  As in the authors' code, R1 and
R2 are computed on each minibatch (``min_i`` over the batch's inputs), the prototypes start uniform in
[0, 1) and the last layer is an ordinary trained linear layer.

Choices, where the framework or our data differ from the paper:

* the encoder is :class:`~nnxai.models.networks.ConvNet`'s ``features`` (conv-act-pool ×2, conv-act, the
  run's activation) followed by the paper's latent layer: a 3x3 stride-2 convolution to ``latent_channels``
  maps (paper, MNIST: the last of its four stride-2 layers has 10 filters, a 2x2x10 latent); the latent
  vector is that layer's output flattened (10 × 4 × 4 = 160 values on 28x28 and 32x32 images);
* the decoder mirrors it with three stride-2 transposed convolutions (latent → c3 → c2 → image channels;
  the paper mirrors its four) whose paddings give back exactly the image's height and width; its last layer
  is linear, not the paper's sigmoid: a sigmoid module would make the whole network read as a sigmoid
  network to the passive methods (:func:`nnxai.methods.base.model_traits`), and the data lie in [0, 1];
* hidden activations are the run's (ReLU by default) instead of the paper's sigmoid, for the same reason;
* no GAP head: ``embed(x)`` is the classifier's input, the squared distances ``p(f(x))``.

:class:`PrototypeNetworkExamples` (catalogue id ``prototype_network``) is the network's own explanation:
for each explained test input, its nearest prototypes, with the decoded prototypes in ``extra``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from nnxai.active.base import ActiveMethod, register_active
from nnxai.explanations import Examples
from nnxai.methods.base import ExampleSelector, explained_indices
from nnxai.models.networks import ConvNet, NetworkSpec, _activation, parameter_count, register_network
from nnxai.params import N_EXPLAIN, Float, Int
from nnxai.registry import register
from nnxai.ops.cav import eval_mode

CHUNK = 256   # inputs per forward pass outside training (memory only)


# -- the paper's terms, as functions of encoded inputs and prototypes (tested in closed form) ---------------
def squared_distances(z: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """``||z_i - p_j||²`` for latent rows ``z`` (n, D) and prototypes (m, D): the prototype layer, (n, m)."""
    d = (z * z).sum(1, keepdim=True) - 2 * z @ prototypes.T + (prototypes * prototypes).sum(1)[None]
    return d.clamp_min(0.0)


def r1_term(distances: torch.Tensor) -> torch.Tensor:
    """R1 = (1/m) Σ_j min_i ||p_j - f(x_i)||², from the (n, m) squared distances (paper Eq. 1)."""
    return distances.min(0).values.mean()


def r2_term(distances: torch.Tensor) -> torch.Tensor:
    """R2 = (1/n) Σ_i min_j ||f(x_i) - p_j||², from the (n, m) squared distances (paper Eq. 1)."""
    return distances.min(1).values.mean()


def reconstruction_term(decoded: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """R = (1/n) Σ_i ||g(f(x_i)) - x_i||², the squared norm summed over every pixel (paper Eq. 1)."""
    return (decoded - inputs).pow(2).flatten(1).sum(1).mean()


def _up_layer(c_in: int, c_out: int, size_in: tuple[int, int], size_out: tuple[int, int]) -> nn.ConvTranspose2d:
    """A 3x3 stride-2 transposed convolution from ``size_in`` to exactly ``size_out`` (each in 2s-1..2s+2)."""
    padding, extra = [], []
    for s_in, s_out in zip(size_in, size_out):
        if not 2 * s_in - 1 <= s_out <= 2 * s_in + 2:
            raise ValueError(f"cannot upsample {s_in} to {s_out} with one stride-2 layer")
        pad = 0 if s_out >= 2 * s_in + 1 else 1          # output = 2 s_in + 1 - 2 pad + output_padding
        padding.append(pad)
        extra.append(s_out - (2 * s_in + 1 - 2 * pad))
    return nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=tuple(padding), output_padding=tuple(extra))


def _sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Spatial sizes along the encoder: image, after pool1, after pool2, after the stride-2 latent conv."""
    h1, w1 = height // 2, width // 2
    h2, w2 = h1 // 2, w1 // 2
    return [(height, width), (h1, w1), (h2, w2), ((h2 - 1) // 2 + 1, (w2 - 1) // 2 + 1)]


class PrototypeAutoencoder(ConvNet):
    """ConvNet encoder + latent layer, a decoder to the image size, ``m`` prototypes, a linear layer over
    the squared distances (paper Fig. 1).  ``forward(x)`` = ``classifier(p(f(x)))``."""

    def __init__(self, in_channels: int, n_classes: int, widths=(16, 32, 64), activation: str = "relu",
                 n_prototypes: int = 15, latent_channels: int = 10, image_height: int = 32, image_width: int = 32):
        super().__init__(in_channels, n_classes, widths, activation)
        c1, c2, c3 = widths
        del self.gap                         # no GAP head: the classifier reads the prototype distances
        self.features.add_module("conv4", nn.Conv2d(c3, latent_channels, 3, stride=2, padding=1))
        self.features.add_module("act4", _activation(activation))
        sizes = _sizes(int(image_height), int(image_width))
        if min(sizes[-1]) < 1:
            raise ValueError(f"images of {image_height}x{image_width} are too small for the encoder")
        self.latent_shape = (int(latent_channels), *sizes[-1])
        self.decoder = nn.Sequential(OrderedDict([
            ("deconv1", _up_layer(latent_channels, c3, sizes[3], sizes[2])), ("act1", _activation(activation)),
            ("deconv2", _up_layer(c3, c2, sizes[2], sizes[1])), ("act2", _activation(activation)),
            ("deconv3", _up_layer(c2, in_channels, sizes[1], sizes[0])),
        ]))
        dim = latent_channels * sizes[-1][0] * sizes[-1][1]
        self.prototypes = nn.Parameter(torch.rand(int(n_prototypes), dim))   # uniform [0, 1), as the paper's code
        self.classifier = nn.Linear(int(n_prototypes), n_classes)
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def reset_parameters(self) -> None:
        """Re-draw the parameters this module holds itself, the prototypes, as at construction (uniform
        [0, 1)); its layers reset their own (the cascading randomisation test of [75] resets each)."""
        with torch.no_grad():
            self.prototypes.copy_(torch.rand_like(self.prototypes))

    # -- the paper's maps ------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x)``: the flattened latent vectors, (n, D)."""
        return self.flatten(self.features(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``g(z)``: latent rows (n, D) back to images of the input's size."""
        return self.decoder(z.reshape(len(z), *self.latent_shape))

    def decode_prototypes(self) -> torch.Tensor:
        """``g(p_j)`` for every prototype: (m, C, H, W), the images the paper shows (Fig. 2)."""
        return self.decode(self.prototypes)

    def prototype_distances(self, z: torch.Tensor) -> torch.Tensor:
        return squared_distances(z, self.prototypes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's input: squared distances of ``f(x)`` to the prototypes (n, m)."""
        return self.prototype_distances(self.encode(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encode(x)
        d = self.prototype_distances(z)
        if self.training:                    # the loss terms reuse this batch's encoding (no second pass)
            self._cache = (z, d)
        return self.classifier(d)

    def take_cache(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The latent rows and distances of the last training forward pass on ``inputs`` (recomputed if
        there was none for a batch of that size)."""
        cached, self._cache = self._cache, None
        if cached is None or len(cached[0]) != len(inputs):
            z = self.encode(inputs)
            return z, self.prototype_distances(z)
        return cached

    # -- what the prototype metric reads (shared with ProtoPNet) ----------------------------------------
    def latent_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Latent vectors compared with the prototypes: one per input here, (n, 1, D)."""
        return self.encode(x)[:, None]

    def prototype_vectors_flat(self) -> torch.Tensor:
        return self.prototypes

    def unit_layers(self) -> dict[str, nn.Module]:
        return {**super().unit_layers(), "latent": self.features.act4}

    @property
    def last_conv_layer(self) -> nn.Module:
        return self.features.act4


def _count(kwargs: dict) -> int:
    c1, c2, c3 = kwargs.get("widths", (16, 32, 64))
    k, lc, m, cin = kwargs["n_classes"], int(kwargs["latent_channels"]), int(kwargs["n_prototypes"]), kwargs["in_channels"]
    _, _, _, (h, w) = _sizes(int(kwargs["image_height"]), int(kwargs["image_width"]))
    base = parameter_count("cnn", {key: v for key, v in kwargs.items() if key in ("in_channels", "n_classes", "widths")})
    base -= c3 * k + k                                                  # the GAP head's classifier
    encoder = c3 * lc * 9 + lc
    decoder = (lc * c3 * 9 + c3) + (c3 * c2 * 9 + c2) + (c2 * cin * 9 + cin)
    return base + encoder + decoder + m * lc * h * w + m * k + k


register_network("prototype_autoencoder", NetworkSpec(
    PrototypeAutoencoder, base="cnn", parameter_count=_count,
    extra={"n_prototypes": (1, 10_000), "latent_channels": (1, 4096), "image_height": (4, 4096),
           "image_width": (4, 4096)}))


@register_active
class PrototypeNetwork(ActiveMethod):
    """Train the prototype autoencoder of [76] on CE + λ R + λ1 R1 + λ2 R2 (paper Eq. 1)."""

    id = "prototype_network"
    description = "autoencoder with a prototype layer, trained on CE + λ R + λ1 R1 + λ2 R2 [76]"
    architectures = frozenset({"cnn"})
    traits = {"gap_head": False, "standard_layers": False,
              "added_layers": ("the prototype layer (squared L2 distance of the encoding to each prototype)",)}
    parameters = {
        "n_prototypes": Int("m, prototypes of the prototype layer (paper, MNIST: 15)", low=1, high=10_000),
        "latent_channels": Int("maps of the encoder's last (latent) layer (paper, MNIST: 10)", low=1, high=4096),
        "reconstruction_weight": Float("λ of the reconstruction error R (paper: 0.05)", low=0.0),
        "r1_weight": Float("λ1 of R1, prototypes near encoded inputs (paper: 0.05)", low=0.0),
        "r2_weight": Float("λ2 of R2, encoded inputs near prototypes (paper: 0.05)", low=0.0),
    }

    def build(self, architecture, kwargs, info):
        _, height, width = info.input_shape
        return "prototype_autoencoder", {**kwargs, "n_prototypes": self.params["n_prototypes"],
                                         "latent_channels": self.params["latent_channels"],
                                         "image_height": int(height), "image_width": int(width)}

    @classmethod
    def why_not(cls, info):
        if len(info.input_shape) != 3:
            return f"needs images (C, H, W); {info.name} has inputs of shape {info.input_shape}"
        return None

    def penalty(self, model, inputs, targets, logits):
        z, d = model.take_cache(inputs)
        p = self.params
        return (p["reconstruction_weight"] * reconstruction_term(model.decode(z), inputs)
                + p["r1_weight"] * r1_term(d) + p["r2_weight"] * r2_term(d))

    def finish(self, model, train, val, device):
        """R1 and R2 over the whole train split (the paper's sums over D), for the record."""
        model._cache = None
        model.eval()
        with torch.no_grad():
            d = torch.cat([model.embed(xb.to(device)).cpu() for xb in train[0].split(CHUNK)])
        return {"r1_train": float(r1_term(d)), "r2_train": float(r2_term(d))}


@torch.no_grad()
def _encoded(model: PrototypeAutoencoder, x: torch.Tensor, device) -> torch.Tensor:
    return torch.cat([model.encode(xb.to(device)).cpu() for xb in x.split(CHUNK)])


@torch.no_grad()
def nearest_images(decoded: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each decoded prototype (m, ...), the nearest image of ``x`` and the mean squared pixel error to it."""
    flat = decoded.flatten(1).double()
    best = torch.full((len(flat),), float("inf"), dtype=torch.float64)
    where = torch.zeros(len(flat), dtype=torch.long)
    for start in range(0, len(x), CHUNK):
        d = squared_distances(flat, x[start:start + CHUNK].flatten(1).double())   # (m, chunk)
        value, pos = d.min(1)
        better = value < best
        best[better], where[better] = value[better], pos[better] + start
    return where, best / flat.shape[1]


@register("prototype_network")
class PrototypeNetworkExamples(ExampleSelector):
    """The prototype network's own explanation [76]: each explained test input's ``top_k`` nearest
    prototypes (paper Sec. 2: the classification is a weighted sum of the distances to them).

    ``examples[i]``: for each of those prototypes, the training input whose encoding is nearest to it (a
    train-split position: the record's examples are training inputs); ``scores[i]``: the squared latent
    distances ``||f(x) - p_j||²`` (smaller is nearer).  ``extra``: ``prototype_ids`` (the prototypes, per
    input), ``contributions`` (``w_{c,j} ||f(x) - p_j||²`` for the predicted class ``c``),
    ``decoded_prototypes`` (``g(p_j)``, (m, C, H, W)), per prototype ``prototype_nearest_train`` and
    ``prototype_train_distance`` (latent, the R1 summand), ``prototype_nearest_image`` and
    ``prototype_pixel_distance`` (mean squared pixel error of ``g(p_j)`` to its nearest training image),
    ``prototype_class`` (the class whose logit falls fastest as the distance grows: argmin_k w_kj) and the
    class weights ``weights`` (K, m).
    """

    parameters = {"n_explain": N_EXPLAIN,
                  "top_k": Int("nearest prototypes kept per explained input (all m if fewer)", low=1)}
    architectures = frozenset({"cnn"})
    only_models = frozenset({"prototype_network"})

    def select(self, model, ctx) -> Examples:
        with eval_mode(model):   # the caller's train/eval mode is left as it was
            return self._select(model, ctx)

    def _select(self, model, ctx) -> Examples:
        if not isinstance(model, PrototypeAutoencoder):
            raise ValueError(f"prototype_network explains a PrototypeAutoencoder, got {type(model).__name__}")
        model.eval()
        idx = explained_indices(len(ctx.test.x), self.params["n_explain"], ctx.seed)
        with torch.no_grad():
            protos = model.prototypes.detach().cpu()
            z_train = _encoded(model, ctx.train.x, ctx.device)
            d_train = squared_distances(z_train.double(), protos.double())          # (n_train, m)
            proto_best, proto_nearest = d_train.min(0)
            d_test = squared_distances(_encoded(model, ctx.test.x[idx], ctx.device), protos)
            weights = model.classifier.weight.detach().cpu()
            pred = (d_test @ weights.T + model.classifier.bias.detach().cpu()).argmax(1)
            decoded = model.decode_prototypes().cpu()
        k = min(int(self.params["top_k"]), len(protos))
        nearest = d_test.topk(k, dim=1, largest=False)
        image, pixel = nearest_images(decoded, ctx.train.x)
        contributions = weights[pred][torch.arange(len(pred))[:, None], nearest.indices] * nearest.values
        extra = {
            "prototype_ids": nearest.indices.tolist(),
            "contributions": contributions.tolist(),
            "decoded_prototypes": decoded.round(decimals=4).tolist(),
            "prototype_nearest_train": proto_nearest.tolist(),
            "prototype_train_distance": proto_best.tolist(),
            "prototype_nearest_image": image.tolist(),
            "prototype_pixel_distance": pixel.tolist(),
            "prototype_class": weights.argmin(0).tolist(),
            "weights": weights.tolist(),
            "n_prototypes": len(protos),
        }
        examples = proto_nearest[nearest.indices].tolist()
        return Examples(indices=idx.tolist(), targets=pred.tolist(), examples=examples,
                        scores=nearest.values.tolist(), extra=extra)
