"""Networks and contexts the rule-extraction tests share: MLPs fitted to the MONK's problems, hand-set
threshold networks, a CNN trained on shapes, and the explain contexts around them."""

from __future__ import annotations

import torch
from torch import nn

from nnxai.data import DATASETS, DatasetInfo, PreparedSplit, monks, shapes
from nnxai.explanations import RuleSet
from nnxai.methods.base import ExplainContext
from nnxai.models.networks import build_network
from nnxai.ops.feature_space import predict_classes
from nnxai.training.runtime import seed_everything
from nnxai.training.trainer import TrainConfig, train_model


def unit_net(units: list[tuple[int, float, int]], need: int, n_features: int, k: float = 200.0) -> nn.Module:
    """Class 1 iff at least ``need`` of the half-spaces ``sign * (x_j - t) > 0`` hold (steep sigmoid units)."""
    net = nn.Sequential(nn.Linear(n_features, len(units)), nn.Sigmoid(), nn.Linear(len(units), 2))
    with torch.no_grad():
        net[0].weight.zero_()
        for i, (j, t, sign) in enumerate(units):
            net[0].weight[i, j] = sign * k
            net[0].bias[i] = -sign * k * t
        net[2].weight.copy_(torch.stack([torch.zeros(len(units)), torch.full((len(units),), 10.0)]))
        net[2].bias.copy_(torch.tensor([0.0, -10.0 * (need - 0.5)]))
    net.architecture = "mlp"
    return net.eval()


def tabular_context(net, x, names=None, seed=0):
    info = DatasetInfo("toy", "tabular", 2, (x.shape[1],), False, False, "test toy")
    meta = {"class_names": ["neg", "pos"], **({"feature_names": names} if names else {})}
    split = PreparedSplit(x=torch.as_tensor(x, dtype=torch.float32), y=torch.zeros(len(x), dtype=torch.long),
                          meta=meta)
    return ExplainContext(model=net, dataset="toy", model_id="toy", info=info, train=split, test=split, seed=seed)


def literals(record: RuleSet) -> list[dict]:
    return [lit for rule in record.rules for cond in rule["conditions"] for lit in cond["literals"]]


def monk_context(problem: int, seed: int = 0) -> ExplainContext:
    """MONK-``problem`` with the sigmoid MLP of configs/config.yaml (hidden [32, 16], 300 epochs, batch 32,
    lr 0.005): ``baseline_sigmoid``."""
    splits, meta = monks.build(problem, {}, seed)

    def split(name):
        d = splits[name]
        return PreparedSplit(x=torch.from_numpy(d["x"]), y=torch.from_numpy(d["y"]), index=d["index"],
                             meta={"class_names": meta["class_names"], "feature_names": meta["feature_names"]})

    train, val, test = split("train"), split("val"), split("test")
    seed_everything(seed)                  # as the train stage: the initial weights come from the seed
    net = build_network("mlp", n_features=17, n_classes=2, hidden=[32, 16], activation="sigmoid")
    train_model(net, (train.x, train.y), (val.x, val.y), TrainConfig(epochs=300, batch_size=32, lr=0.005), seed,
                progress=False)
    info = DATASETS[f"monks{problem}"]
    return ExplainContext(model=net.eval(), dataset=info.name, model_id="baseline_sigmoid", info=info, train=train,
                          test=test, seed=seed)


def shapes_context(net: nn.Module, train: dict, test: dict, n_train: int) -> ExplainContext:
    """A context over generated ``shapes`` splits (the generator's dicts, with their concepts): the first
    ``n_train`` training images and the whole test split."""
    meta = {"class_names": list(shapes.CLASS_NAMES)}

    def split(d, n):
        return PreparedSplit(x=torch.from_numpy(d["x"][:n]), y=torch.from_numpy(d["y"][:n]),
                             concepts=d["concepts"][:n], meta=meta)

    return ExplainContext(model=net, dataset="shapes", model_id="cnn", info=DATASETS["shapes"],
                          train=split(train, n_train), test=split(test, None), seed=0)


def fitted_mlp(x: torch.Tensor, y: torch.Tensor, activation: str = "sigmoid", n_classes: int = 2,
               hidden=(32, 16)) -> nn.Module:
    """The pipeline's MLP shape, full-batch Adam (lr 0.01) until it fits every training robot (rule fixed
    before any extraction: "an MLP that fits the data"), at most 3000 steps."""
    torch.manual_seed(0)
    net = build_network("mlp", n_features=x.shape[1], n_classes=n_classes, hidden=list(hidden),
                        activation=activation)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for step in range(3000):
        opt.zero_grad()
        out = net(x)
        nn.functional.cross_entropy(out, y).backward()
        opt.step()
        if step % 50 == 0 and bool((out.argmax(1) == y).all()):
            break
    return net.eval()


def monks_context(problem: int, activation: str) -> ExplainContext:
    info = DATASETS[f"monks{problem}"]
    splits, meta = info.build({"train": None, "val": None, "test": None}, 0, None)
    split = {s: PreparedSplit(x=torch.from_numpy(splits[s]["x"]), y=torch.from_numpy(splits[s]["y"]), meta=meta)
             for s in ("train", "test")}
    net = fitted_mlp(split["train"].x, split["train"].y, activation)
    assert (predict_classes(net, split["train"].x) == split["train"].y.numpy()).all()
    return ExplainContext(model=net, dataset=info.name, model_id=activation, info=info, train=split["train"],
                          test=split["test"], seed=0)


def trained_monks_context(name: str, seed: int = 0) -> ExplainContext:
    """A sigmoid MLP (hidden [32, 16]) trained on MONK's train robots, 600 steps of full-batch Adam (lr 0.01);
    test: all 432 robots."""
    splits, meta = DATASETS[name].build({"train": None, "val": None, "test": None}, seed, None)
    tensors = {s: (torch.as_tensor(splits[s]["x"]), torch.as_tensor(splits[s]["y"])) for s in ("train", "test")}
    torch.manual_seed(seed)
    net = build_network("mlp", n_features=17, n_classes=2, hidden=[32, 16], activation="sigmoid")
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(600):
        opt.zero_grad()
        nn.functional.cross_entropy(net(tensors["train"][0]), tensors["train"][1]).backward()
        opt.step()
    net.zero_grad(set_to_none=True)
    split = lambda s: PreparedSplit(x=tensors[s][0], y=tensors[s][1], meta=meta)  # noqa: E731
    return ExplainContext(model=net.eval(), dataset=name, model_id="baseline_sigmoid", info=DATASETS[name],
                          train=split("train"), test=split("test"), seed=seed)
