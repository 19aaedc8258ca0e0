"""ProtoPNet (survey ref. [123]; Chen, Li, Tao, Barnett, Su & Rudin, NeurIPS 2019, "This looks like that:
deep learning for interpretable image recognition").

The network (paper Sec. 2.1, Fig. 2): a CNN backbone ``f`` (here :class:`~nnxai.models.networks.ConvNet`'s
``features``), add-on 1x1 convolutions (ReLU, then sigmoid, as the authors' "bottleneck" add-on), a
prototype layer ``g_p`` of ``m_k`` prototypes per class ``P_k``, each a 1x1 patch ``p_j`` of the latent space,
scoring each latent patch ``z̃`` of ``z = f(x)`` by

    g_pj(z) = max_{z̃ ∈ patches(z)} log((||z̃ - p_j||² + 1) / (||z̃ - p_j||² + ε)),   ε = 1e-4,

and a last layer ``h`` (no bias) initialised with the class connections ``w_h^(k,j) = 1`` for ``p_j ∈ P_k``
and ``-0.5`` otherwise (Sec. 2.2).  Training (Sec. 2.2):

1. warm-up (the first ``warm_epochs``: backbone frozen) and joint training of every layer before ``h``
   (``h`` fixed) on ``CrsEnt + λ1 Clst + λ2 Sep`` with
   ``Clst = (1/n) Σ_i min_{j: p_j ∈ P_{y_i}} min_{z̃} ||z̃ - p_j||²`` and
   ``Sep = -(1/n) Σ_i min_{j: p_j ∉ P_{y_i}} min_{z̃} ||z̃ - p_j||²`` (λ1 = 0.8, λ2 = 0.08);
2. the push (prototype projection): ``p_j ← argmin_{z̃ ∈ Z_j} ||z̃ - p_j||²`` with ``Z_j`` the latent patches of
   the training images of ``p_j``'s class, one pass over the train split; the image and the patch location
   each prototype was pushed onto are kept (buffers ``push_index``, ``push_location``);
3. the convex last-layer optimisation ``min_{w_h} (1/n) Σ_i CrsEnt + λ Σ_k Σ_{j: p_j ∉ P_k} |w_h^(k,j)|``
   with everything else fixed (λ = 1e-4), by Adam over the similarities of the train split computed once.

The min distances of each training batch are stored by ``forward`` (training mode) for the ``penalty`` hook.

Schedule (a choice, for the budget): stage 1 runs for all the run's epochs, then the push (stage 2) and the
last-layer step (stage 3) run **once**, at the end (:meth:`ProtoPNet.finish`).  The paper alternates: rounds
of joint training, each followed by a push and a last-layer optimisation (the authors' code pushes every 10 epochs
and ends on a push and last layer), so that later joint epochs adapt the network to pushed prototypes.  We
do not implement push rounds: each push is a full pass over the train split plus a last-layer step over its
cached similarities (two extra forward passes over the train split per round), and a round every N epochs
would need a new configured parameter N; the single final push keeps what the explanation relies on (every
prototype *is* a training patch, the last layer is fitted to the pushed prototypes), and loses only the
joint epochs after intermediate pushes that may recover accuracy lost by a push.

Choices: the backbone is trained from scratch (no pretrained weights offline), so the paper's warm-up, which
protects pretrained features while the new layers fit, has nothing to protect; ``warm_epochs`` is kept as a
parameter (default profile: 0).  One Adam learning rate (the run's) for every layer in stage 1, instead of
the paper's per-layer rates and schedule.  The last layer's Adam rate and epochs are the authors' code's
(1e-4, 20).  The sigmoid of the add-on makes the network read as a sigmoid network to the passive methods
(the ReLU-only propagation rules are skipped on it: their rules do not cover the prototype layer either).

:class:`ProtoPNetExamples` (catalogue id ``protopnet``) gives "this looks like that": for each explained
test input its most similar prototypes, and where each prototype came from.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from nnxai.active.base import ActiveMethod, register_active
from nnxai.explanations import Examples
from nnxai.methods.base import ExampleSelector, explained_indices
from nnxai.models.networks import ConvNet, NetworkSpec, parameter_count, register_network
from nnxai.params import N_EXPLAIN, Float, Int
from nnxai.registry import register
from nnxai.ops.cav import eval_mode

EPSILON = 1e-4          # ε of the similarity (authors' code)
WRONG_CLASS_INIT = -0.5  # w_h^(k,j) for p_j ∉ P_k at initialisation (Sec. 2.2)
CHUNK = 256             # inputs per forward pass outside training (memory only)
BOX_PERCENTILE = 95     # the paper's high-activation region of a prototype (Sec. 2.3)


def similarity(distances: torch.Tensor) -> torch.Tensor:
    """``log((d + 1) / (d + ε))`` of squared distances ``d`` (paper Sec. 2.1)."""
    return torch.log((distances + 1) / (distances + EPSILON))


def cluster_separation(min_distances: torch.Tensor, identity: torch.Tensor,
                       targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Clst, Sep)`` of a batch from its (n, m) min distances and the (m, K) prototype class identity;
    ``Sep`` with the paper's minus sign (Sec. 2.2)."""
    own = identity[:, targets].T.bool()                                     # (n, m): p_j ∈ P_{y_i}
    inf = torch.full_like(min_distances, float("inf"))
    clst = torch.where(own, min_distances, inf).min(1).values.mean()
    sep = -torch.where(own, inf, min_distances).min(1).values.mean()
    return clst, sep


class ProtoPNetCNN(ConvNet):
    """Backbone (ConvNet features), add-on 1x1 convolutions, prototype layer, last layer (paper Fig. 2)."""

    def __init__(self, in_channels: int, n_classes: int, widths=(16, 32, 64), activation: str = "relu",
                 prototypes_per_class: int = 10, prototype_depth: int = 64):
        super().__init__(in_channels, n_classes, widths, activation)
        c3, depth = widths[2], int(prototype_depth)
        m = int(prototypes_per_class) * n_classes
        del self.gap                                     # no GAP head: max pooling of similarities instead
        self.add_on = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(c3, depth, 1)), ("act1", nn.ReLU()),
            ("conv2", nn.Conv2d(depth, depth, 1)), ("act2", nn.Sigmoid()),
        ]))
        self.prototype_vectors = nn.Parameter(torch.rand(m, depth, 1, 1))   # uniform [0, 1), authors' code
        identity = torch.zeros(m, n_classes)
        identity[torch.arange(m), torch.arange(m) // int(prototypes_per_class)] = 1.0
        self.register_buffer("prototype_identity", identity)               # (m, K): p_j ∈ P_k
        self.classifier = nn.Linear(m, n_classes, bias=False)
        with torch.no_grad():
            self.classifier.weight.copy_(identity.T + WRONG_CLASS_INIT * (1 - identity.T))
        # the push's record: train-split image and latent (row, column) of each prototype; -1 before it
        self.register_buffer("push_index", torch.full((m,), -1.0))
        self.register_buffer("push_location", torch.full((m, 2), -1.0))
        self._min_distances: torch.Tensor | None = None

    def reset_parameters(self) -> None:
        """Re-draw the parameters this module holds itself, the prototypes, as at construction (uniform
        [0, 1)); its layers reset their own (the cascading randomisation test of [75] resets each)."""
        with torch.no_grad():
            self.prototype_vectors.copy_(torch.rand_like(self.prototype_vectors))

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x)``: backbone then add-on, (n, D, H, W)."""
        return self.add_on(self.features(x))

    def distance_maps(self, z: torch.Tensor) -> torch.Tensor:
        """``||z̃ - p_j||²`` for every latent patch: (n, m, H, W), as ||z̃||² - 2 z̃·p + ||p||²."""
        p = self.prototype_vectors
        cross = F.conv2d(z, p)
        return ((z * z).sum(1, keepdim=True) - 2 * cross + (p * p).sum((1, 2, 3))[None, :, None, None]).clamp_min(0.0)

    def min_distances(self, x: torch.Tensor) -> torch.Tensor:
        return self.distance_maps(self.latent(x)).flatten(2).min(2).values

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The last layer's input: the prototype similarity scores ``g_pj`` (n, m)."""
        return similarity(self.min_distances(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.min_distances(x)
        if self.training:                              # Clst/Sep of this batch reuse them (penalty hook)
            self._min_distances = d
        return self.classifier(similarity(d))

    def take_min_distances(self, inputs: torch.Tensor) -> torch.Tensor:
        cached, self._min_distances = self._min_distances, None
        return cached if cached is not None and len(cached) == len(inputs) else self.min_distances(inputs)

    # -- what the prototype metric reads (shared with the prototype autoencoder) ------------------------
    def latent_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Every latent 1x1 patch of each input: (n, H·W, D)."""
        return self.latent(x).flatten(2).transpose(1, 2)

    def prototype_vectors_flat(self) -> torch.Tensor:
        return self.prototype_vectors.flatten(1)

    def prototype_classes(self) -> torch.Tensor:
        return self.prototype_identity.argmax(1)


def _count(kwargs: dict) -> int:
    c3, k = kwargs.get("widths", (16, 32, 64))[2], kwargs["n_classes"]
    depth, m = int(kwargs["prototype_depth"]), int(kwargs["prototypes_per_class"]) * k
    base = parameter_count("cnn", {key: v for key, v in kwargs.items() if key in ("in_channels", "n_classes", "widths")})
    return base - (c3 * k + k) + (c3 * depth + depth) + (depth * depth + depth) + m * depth + m * k


register_network("protopnet_cnn", NetworkSpec(ProtoPNetCNN, base="cnn", parameter_count=_count,
                                              extra={"prototypes_per_class": (1, 1000), "prototype_depth": (1, 4096)}))


# -- stage 2: the push ---------------------------------------------------------------------------------------
@torch.no_grad()
def push_prototypes(model: ProtoPNetCNN, x: torch.Tensor, y: torch.Tensor, device) -> dict:
    """Project each prototype onto its nearest latent patch of a training image of its class (Sec. 2.2);
    records ``push_index``/``push_location``.  Returns the squared distances moved, per prototype."""
    model.eval()
    classes = model.prototype_classes().cpu()
    m, depth = model.prototype_vectors.shape[:2]
    best = torch.full((m,), float("inf"))
    vectors = model.prototype_vectors.detach().flatten(1).cpu().clone()
    index, location = model.push_index.cpu().clone(), model.push_location.cpu().clone()
    for start in range(0, len(x), CHUNK):
        z = model.latent(x[start:start + CHUNK].to(device))
        d = model.distance_maps(z).cpu()                                    # (b, m, H, W)
        width = d.shape[3]
        other = y[start:start + CHUNK, None] != classes[None]               # (b, m): image not of p_j's class
        d = d.masked_fill(other[:, :, None, None], float("inf")).flatten(2)
        per_image, position = d.min(2)                                      # (b, m)
        value, image = per_image.min(0)                                     # (m,)
        for j in torch.nonzero(value < best).flatten().tolist():
            i, pos = int(image[j]), int(position[image[j], j])
            row, col = divmod(pos, width)
            best[j] = value[j]
            vectors[j] = z[i, :, row, col].cpu()
            index[j], location[j] = float(start + i), torch.tensor([float(row), float(col)])
    moved = best.clone()
    model.prototype_vectors.copy_(vectors.reshape(model.prototype_vectors.shape).to(model.prototype_vectors.device))
    model.push_index.copy_(index.to(model.push_index.device))
    model.push_location.copy_(location.to(model.push_location.device))
    return {"pushed": int((index >= 0).sum()), "mean_distance_moved": float(moved[torch.isfinite(moved)].mean())}


# -- stage 3: the convex last-layer optimisation ----------------------------------------------------------
def wrong_class_l1(weight: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
    """``Σ_k Σ_{j: p_j ∉ P_k} |w_h^(k,j)|`` (paper Sec. 2.2, stage 3)."""
    return (weight * (1 - identity.T)).abs().sum()


def optimise_last_layer(weight: torch.Tensor, similarities: torch.Tensor, y: torch.Tensor, identity: torch.Tensor,
                        l1: float, lr: float, epochs: int, batch_size: int, seed: int) -> torch.Tensor:
    """Adam on ``CrsEnt(S wᵀ, y) + λ Σ wrong-class |w|`` over cached similarities ``S`` (n, m); returns the
    new (K, m) weight (the backbone and prototypes are fixed: only ``S`` enters)."""
    w = weight.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([w], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            rows = order[start:start + batch_size]
            loss = F.cross_entropy(similarities[rows] @ w.T, y[rows]) + l1 * wrong_class_l1(w, identity)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    return w.detach()


@torch.no_grad()
def _similarities(model: ProtoPNetCNN, x: torch.Tensor, device) -> torch.Tensor:
    model.eval()
    return torch.cat([model.embed(xb.to(device)).cpu() for xb in x.split(CHUNK)])


@register_active
class ProtoPNet(ActiveMethod):
    """Train ProtoPNet [123]: joint stage with Clst/Sep (penalty hook), then push and last layer (finish)."""

    id = "protopnet"
    description = "ProtoPNet: prototype patches, Clst/Sep, push and sparse last layer [123]"
    architectures = frozenset({"cnn"})
    traits = {"gap_head": False, "activation": "sigmoid", "standard_layers": False,   # the add-on ends in a sigmoid
              "added_layers": ("the prototype layer (log-similarity of the least L2 distance to each prototype)",)}
    parameters = {
        "prototypes_per_class": Int("m_k, prototypes per class (paper: 10)", low=1, high=1000),
        "prototype_depth": Int("channels D of the add-on layers and of each 1x1 prototype (paper: 128..512 "
                               "for its wider backbones)", low=1, high=4096),
        "clst_weight": Float("λ1 of the cluster cost Clst (paper: 0.8)", low=0.0),
        "sep_weight": Float("λ2 of the separation cost Sep (paper: 0.08)", low=0.0),
        "warm_epochs": Int("first epochs with the backbone frozen (paper: 5, on a pretrained backbone)", low=0),
        "last_layer_l1": Float("λ of the L1 on wrong-class connections in the last-layer step (paper: 1e-4)",
                               low=0.0),
        "last_layer_lr": Float("Adam rate of the last-layer step (authors' code: 1e-4)", low=0.0, low_open=True),
        "last_layer_epochs": Int("epochs of the last-layer step over the cached similarities (authors' code: 20)",
                                 low=0),
        "last_layer_batch_size": Int("batch of the last-layer step (authors' code: 80)", low=1),
    }

    def build(self, architecture, kwargs, info):
        return "protopnet_cnn", {**kwargs, "prototypes_per_class": self.params["prototypes_per_class"],
                                 "prototype_depth": self.params["prototype_depth"]}

    def setup(self, model, train, info, device, seed):
        self.seed = int(seed)
        model.classifier.weight.requires_grad_(False)        # h stays at its class connections in stage 1
        model.features.requires_grad_(self.params["warm_epochs"] == 0)

    def after_epoch(self, model, epoch):
        if epoch == self.params["warm_epochs"]:               # warm-up over: joint training of all but h
            model.features.requires_grad_(True)
        return {}

    def penalty(self, model, inputs, targets, logits):
        clst, sep = cluster_separation(model.take_min_distances(inputs), model.prototype_identity, targets)
        return self.params["clst_weight"] * clst + self.params["sep_weight"] * sep

    def finish(self, model, train, val, device):
        """Stage 2 (push) and stage 3 (last layer), the rest of the network fixed."""
        p = self.params
        model._min_distances = None
        model.requires_grad_(False)
        x, y = train
        pushed = push_prototypes(model, x, y, device)
        sims = _similarities(model, x, device)
        identity = model.prototype_identity.cpu()
        before = model.classifier.weight.detach().cpu().clone()
        after = optimise_last_layer(before, sims, y, identity, p["last_layer_l1"], p["last_layer_lr"],
                                    p["last_layer_epochs"], p["last_layer_batch_size"], self.seed)
        model.classifier.weight.data.copy_(after.to(model.classifier.weight.device))
        model.requires_grad_(True)
        return {**pushed, "wrong_class_l1_before": float(wrong_class_l1(before, identity)),
                "wrong_class_l1_after": float(wrong_class_l1(after, identity)),
                "train_accuracy_after": float(((sims @ after.T).argmax(1) == y).double().mean())}


def activation_box(similarity_map: torch.Tensor, height: int, width: int) -> list[int]:
    """The paper's high-activation region (Sec. 2.3): upsample a (H', W') similarity map to the image
    (bicubic), keep the pixels at or above its 95th percentile, return their bounding box
    ``[top, left, bottom, right]`` (ends exclusive)."""
    up = F.interpolate(similarity_map[None, None].double(), size=(height, width), mode="bicubic",
                       align_corners=False)[0, 0]
    rows, cols = torch.nonzero(up >= torch.quantile(up.flatten(), BOX_PERCENTILE / 100), as_tuple=True)
    return [int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1]


@register("protopnet")
class ProtoPNetExamples(ExampleSelector):
    """"This looks like that" [123]: each explained test input's ``top_k`` most similar prototypes.

    ``examples[i]``: the train-split image each of those prototypes was pushed onto; ``scores[i]``: the
    similarity scores ``g_pj`` (larger is more similar).  ``extra``: ``prototype_ids`` (per input),
    ``contributions`` (``w_h^(c,j) g_pj`` for the predicted class ``c``: the points of the paper's Fig. 3),
    ``test_locations`` (latent (row, column) of the most similar patch of the test image), and per
    prototype ``push_index`` (train image), ``push_location`` (latent row, column), ``push_box`` (the
    image's 95th-percentile high-activation box ``[top, left, bottom, right]``, Sec. 2.3),
    ``prototype_class`` and the last layer ``weights`` (K, m).
    """

    parameters = {"n_explain": N_EXPLAIN,
                  "top_k": Int("most similar prototypes kept per explained input (all m if fewer)", low=1)}
    architectures = frozenset({"cnn"})
    only_models = frozenset({"protopnet"})

    def select(self, model, ctx) -> Examples:
        with eval_mode(model):   # the caller's train/eval mode is left as it was
            return self._select(model, ctx)

    def _select(self, model, ctx) -> Examples:
        if not isinstance(model, ProtoPNetCNN):
            raise ValueError(f"protopnet explains a ProtoPNetCNN, got {type(model).__name__}")
        index = model.push_index.long().cpu()
        if bool((index < 0).any()):
            raise ValueError("the ProtoPNet was not pushed (push_index holds -1): retrain it")
        model.eval()
        idx = explained_indices(len(ctx.test.x), self.params["n_explain"], ctx.seed)
        height, width = ctx.test.x.shape[-2:]
        location = model.push_location.long().cpu()
        with torch.no_grad():
            maps = torch.cat([model.distance_maps(model.latent(xb.to(ctx.device))).cpu()
                              for xb in ctx.test.x[idx].split(CHUNK)])                # (n, m, H', W')
            best, where = maps.flatten(2).min(2)
            sims = similarity(best)
            weights = model.classifier.weight.detach().cpu()
            pred = (sims @ weights.T).argmax(1)
            boxes = []
            for j, i in enumerate(index.tolist()):
                source = model.distance_maps(model.latent(ctx.train.x[i:i + 1].to(ctx.device)))[0, j].cpu()
                boxes.append(activation_box(similarity(source), height, width))
        k = min(int(self.params["top_k"]), sims.shape[1])
        top = sims.topk(k, dim=1)
        rows = torch.arange(len(idx))[:, None]
        grid_w = maps.shape[3]
        positions = where[rows, top.indices]
        extra = {
            "prototype_ids": top.indices.tolist(),
            "contributions": (weights[pred][rows, top.indices] * top.values).tolist(),
            "test_locations": torch.stack([positions // grid_w, positions % grid_w], dim=2).tolist(),
            "push_index": index.tolist(),
            "push_location": location.tolist(),
            "push_box": boxes,
            "prototype_class": model.prototype_classes().cpu().tolist(),
            "weights": weights.tolist(),
            "n_prototypes": sims.shape[1],
        }
        return Examples(indices=idx.tolist(), targets=pred.tolist(), examples=index[top.indices].tolist(),
                        scores=top.values.tolist(), extra=extra)
