"""The networks every experiment trains: a small CNN with a global-average-pool head and a tabular MLP.

Design constraints come from the methods that must run on them (survey Sections III-C, Table IV):

* one activation *module per use* and no in-place activations, so that backward hooks of DeconvNet [72],
  guided backprop [102], DeepLIFT [112] and LRP [113] can rewrite each nonlinearity separately;
* a global-average-pool (GAP) head followed by one linear layer, so that CAM [138] applies and the
  representer theorem of [117] holds for the last layer;
* named unit layers (the outputs of each activation), read by Network Dissection [21] and TCAV [63].
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from nnxai.registration import Registry

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation {name!r} is not supported; choose one of {sorted(ACTIVATIONS)}") from None


class ConvNet(nn.Module):
    """conv-act-pool, conv-act-pool, conv-act, global average pool, linear.

    Parameters
    ----------
    in_channels, n_classes
        Input channels (3 for RGB, 1 for digits) and classes.
    widths
        Channels of the three convolutions.
    activation
        ``"relu"`` (default) or ``"sigmoid"``.
    """

    architecture = "cnn"

    def __init__(self, in_channels: int, n_classes: int, widths=(16, 32, 64), activation: str = "relu"):
        super().__init__()
        c1, c2, c3 = widths
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, c1, 3, padding=1)), ("act1", _activation(activation)),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(c1, c2, 3, padding=1)), ("act2", _activation(activation)),
            ("pool2", nn.MaxPool2d(2)),
            ("conv3", nn.Conv2d(c2, c3, 3, padding=1)), ("act3", _activation(activation)),
        ]))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(c3, n_classes)

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Activations of the last convolutional layer (what CAM and Grad-CAM weight)."""
        return self.features(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate representation f_i of [117]: the GAP of the last conv layer."""
        return self.flatten(self.gap(self.features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))

    def unit_layers(self) -> dict[str, nn.Module]:
        """Modules whose outputs are the units of each hidden layer, shallow to deep."""
        return {"conv1": self.features.act1, "conv2": self.features.act2, "conv3": self.features.act3}

    @property
    def last_conv_layer(self) -> nn.Module:
        return self.features.act3


class MLP(nn.Module):
    """Fully connected network for tabular data: (linear-act) × len(hidden), linear.

    ``activation="sigmoid"`` gives the units that the classic decompositional rule extractors
    (KT [81], M-of-N [82], NeuroRule [83]) assume.
    """

    architecture = "mlp"

    def __init__(self, n_features: int, n_classes: int, hidden=(32, 16), activation: str = "relu"):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        width = n_features
        for i, h in enumerate(hidden, start=1):
            layers[f"fc{i}"] = nn.Linear(width, h)
            layers[f"act{i}"] = _activation(activation)
            width = h
        self.features = nn.Sequential(layers)
        self.classifier = nn.Linear(width, n_classes)
        self._n_hidden = len(hidden)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Last hidden layer: the f_i of the representer theorem [117]."""
        return self.features(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))

    def unit_layers(self) -> dict[str, nn.Module]:
        return {f"fc{i}": getattr(self.features, f"act{i}") for i in range(1, self._n_hidden + 1)}


ARCHITECTURES = {"cnn": ConvNet, "mlp": MLP}

#: What a checkpoint or a config may ask to build; checked before any weight is allocated, so a crafted
#: file claiming a million channels is refused instead of exhausting memory.
BOUNDS = {"in_channels": (1, 64), "n_features": (1, 1_000_000), "n_classes": (1, 10_000), "width": (1, 4096),
          "layers": (0, 16)}
MAX_PARAMETERS = 50_000_000
_REQUIRED = {"cnn": ("in_channels", "n_classes"), "mlp": ("n_features", "n_classes")}
_OPTIONAL = {"cnn": ("widths", "activation"), "mlp": ("hidden", "activation")}


def _bounded_int(key: str, value, bound: str) -> int:
    low, high = BOUNDS[bound]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key} must be an integer in {low}..{high}, got {value!r}")
    return value


def _widths(key: str, value, n_layers: tuple[int, int]) -> list[int]:
    if not isinstance(value, (list, tuple)) or not n_layers[0] <= len(value) <= n_layers[1]:
        count = str(n_layers[0]) if n_layers[0] == n_layers[1] else f"{n_layers[0]}..{n_layers[1]}"
        raise ValueError(f"{key} must be a list of {count} layer widths, got {value!r}")
    return [_bounded_int(f"{key}[{i}]", v, "width") for i, v in enumerate(value)]


def parameter_count(architecture: str, kwargs: dict) -> int:
    """Weights and biases the network of checked ``kwargs`` holds (computed, not built)."""
    if architecture == "cnn":
        sizes = [kwargs["in_channels"], *kwargs.get("widths", (16, 32, 64))]
        convs = sum(a * b * 9 + b for a, b in zip(sizes, sizes[1:]))
        return convs + sizes[-1] * kwargs["n_classes"] + kwargs["n_classes"]
    sizes = [kwargs["n_features"], *kwargs.get("hidden", (32, 16)), kwargs["n_classes"]]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


@dataclass(frozen=True)
class NetworkSpec:
    """A network an active method trains (survey Sec. IV), built on one of the base networks.

    Parameters
    ----------
    cls : type
        The module class; its constructor takes the base network's arguments and ``extra``.
    base : {"cnn", "mlp"}
        Whose arguments it takes (checked as that network's) and whose interface it keeps.
    extra : mapping of str to (low, high)
        Further constructor arguments, each an integer or float within its bounds (a list of them: each item).
    parameter_count : callable, optional
        ``kwargs -> int``: the weights it holds, computed without building it (checked against
        :data:`MAX_PARAMETERS`); default: the base network's count.
    """

    cls: type
    base: str
    extra: dict[str, tuple[float, float]] = field(default_factory=dict)
    parameter_count: Callable[[dict], int] | None = None


#: Networks active methods register (``register_network``), beside the two base ones; checkpoints name them.
NETWORKS: Registry[NetworkSpec] = Registry("network", packages=("nnxai.active",))


def register_network(name: str, spec: NetworkSpec) -> NetworkSpec:
    """Register a network an active method trains; its class gets ``network_name``."""
    if spec.base not in ARCHITECTURES:
        raise ValueError(f"network {name!r}: base {spec.base!r} is not one of {sorted(ARCHITECTURES)}")
    spec.cls.network_name = name
    return NETWORKS.register(name, spec)


def _check_extra(name: str, spec: NetworkSpec, kwargs: dict) -> None:
    for key, (low, high) in spec.extra.items():
        value = kwargs.get(key)
        items = value if isinstance(value, (list, tuple)) else [value]
        if not items or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high
                                for v in items):
            raise ValueError(f"{key} of network {name!r} must be a number (or list of numbers) in {low}..{high}, "
                             f"got {value!r}")


def network_names() -> list[str]:
    """Every network a checkpoint may name: the base ones and those registered by active methods."""
    return sorted([*ARCHITECTURES, *NETWORKS.names()])


def check_arch(architecture: object, kwargs: object) -> dict:
    """Validate a network description (as stored in checkpoints) without building it.

    Every key is one of the constructor's, every size an integer within :data:`BOUNDS`, the activation
    known, and the whole network at most :data:`MAX_PARAMETERS` weights.  A network of an active method
    (:data:`NETWORKS`) is checked as its base network plus its declared extra arguments.

    Raises
    ------
    ValueError
        Naming the key, the bad value and what is allowed.
    """
    if isinstance(architecture, str) and architecture not in ARCHITECTURES and architecture in NETWORKS:
        spec = NETWORKS[architecture]
        if not isinstance(kwargs, dict):
            raise ValueError(f"arch_kwargs must be a mapping, got {kwargs!r}")
        missing = sorted(set(spec.extra) - set(kwargs))
        if missing:
            raise ValueError(f"arch_kwargs of network {architecture!r} miss {missing}")
        _check_extra(architecture, spec, kwargs)
        base = {k: v for k, v in kwargs.items() if k not in spec.extra}
        _check_base(spec.base, base)
        count = spec.parameter_count(kwargs) if spec.parameter_count else parameter_count(spec.base, base)
        if count > MAX_PARAMETERS:
            raise ValueError(f"network {architecture!r} with {dict(kwargs)} has {count:,} parameters, more than "
                             f"the {MAX_PARAMETERS:,} allowed")
        return kwargs
    if not isinstance(architecture, str) or architecture not in ARCHITECTURES:
        raise ValueError(f"architecture {architecture!r} is unknown; choose one of {network_names()}")
    return _check_base(architecture, kwargs)


def _check_base(architecture: str, kwargs: object) -> dict:
    if not isinstance(kwargs, dict):
        raise ValueError(f"arch_kwargs must be a mapping, got {kwargs!r}")
    allowed = _REQUIRED[architecture] + _OPTIONAL[architecture]
    unknown, missing = sorted(set(kwargs) - set(allowed)), [k for k in _REQUIRED[architecture] if k not in kwargs]
    if unknown or missing:
        raise ValueError(f"arch_kwargs of a {architecture} take {list(allowed)} ({list(_REQUIRED[architecture])} "
                         f"required); unknown {unknown}, missing {missing}")
    for key in _REQUIRED[architecture]:
        _bounded_int(key, kwargs[key], key)
    if "widths" in kwargs:
        _widths("widths", kwargs["widths"], (3, 3))
    if "hidden" in kwargs:
        _widths("hidden", kwargs["hidden"], BOUNDS["layers"])
    if "activation" in kwargs and kwargs["activation"] not in ACTIVATIONS:
        raise ValueError(f"activation {kwargs['activation']!r} is not supported; choose one of {sorted(ACTIVATIONS)}")
    count = parameter_count(architecture, kwargs)
    if count > MAX_PARAMETERS:
        raise ValueError(f"a {architecture} with {dict(kwargs)} has {count:,} parameters, more than the "
                         f"{MAX_PARAMETERS:,} allowed")
    return kwargs


def network_kwargs(architecture: str, arch_config: dict, activation: str, input_shape, n_classes: int) -> dict:
    """Constructor arguments of the network a config describes (what checkpoints store as ``arch_kwargs``)."""
    if architecture == "cnn":
        return {"in_channels": int(input_shape[0]), "n_classes": int(n_classes),
                "widths": list(arch_config["widths"]), "activation": activation}
    n_features = 1
    for size in input_shape:
        n_features *= int(size)
    return {"n_features": n_features, "n_classes": int(n_classes), "hidden": list(arch_config["hidden"]),
            "activation": activation}


def build_network(architecture: str, **kwargs) -> nn.Module:
    """Instantiate a network from its name (a base architecture or a registered :data:`NETWORKS` entry) and
    constructor arguments (as stored in checkpoints); the description is checked first (:func:`check_arch`).
    The network remembers both (``network_name``, ``network_kwargs``), so a checkpoint can record it."""
    check_arch(architecture, kwargs)
    cls = ARCHITECTURES[architecture] if architecture in ARCHITECTURES else NETWORKS[architecture].cls
    model = cls(**kwargs)
    model.network_name, model.network_kwargs = architecture, dict(kwargs)
    return channels_last(model)


def channels_last(model: nn.Module) -> nn.Module:
    """``model`` with its 4-d weights in the channels-last memory layout when it has a convolution.

    Only the layout changes, not a value: PyTorch's CPU convolutions (oneDNN) run about twice as fast
    forward, and 1.3-1.5x forward+backward, on our small CNNs in this layout, whatever the input's layout
    (``benchmarks/channels_last.py``); CUDA's cuDNN prefers it too.  Loading a state dict copies values
    into these weights and keeps the layout."""
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
    return model
