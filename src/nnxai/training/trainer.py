"""The training loop: Adam on cross-entropy plus the variant's penalty (:mod:`~nnxai.training.penalties`)
and, for an active method of the survey (Sec. IV), the hooks of its :class:`~nnxai.active.base.ActiveMethod`
(its loss term, per-step and per-epoch work, a final step), seeded data order.

Deterministic on CPU: the same data, config and seed give the same weights bit for bit
(``tests/training/test_trainer.py`` checks it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from nnxai.training.penalties import NO_PENALTY, PENALTIES, Penalty, check_penalty
from nnxai.training.runtime import seed_everything


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; the message names the step and the settings that led there."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    penalty: str = NO_PENALTY  # a name in PENALTIES: added to the loss as penalty_weight * penalty
    penalty_weight: float = 0.0

    def __post_init__(self):
        finite = all(math.isfinite(v) for v in (self.lr, self.weight_decay, self.penalty_weight))
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or not finite:
            raise ValueError(f"training needs epochs >= 1, batch_size >= 1, a finite lr > 0 and finite weights; "
                             f"got {asdict(self)}")
        check_penalty(self.penalty)

    def penalty_term(self) -> Penalty | None:
        """The penalty to add to the loss, or ``None`` when there is none (or its weight is 0)."""
        if self.penalty == NO_PENALTY or self.penalty_weight <= 0:
            return None
        return PENALTIES[self.penalty]


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512,
             per_input: bool = False):
    """Fraction of ``x`` classified as ``y``; with ``per_input``, the 0/1 correctness of each input."""
    model.eval()
    device = next(model.parameters()).device
    hits = [(model(x[start:start + batch_size].to(device)).argmax(1).cpu() == y[start:start + batch_size])
            for start in range(0, len(x), batch_size)]
    correct = torch.cat(hits).double() if hits else torch.zeros(0, dtype=torch.float64)
    if per_input:
        return correct.numpy()
    return correct.sum().item() / max(len(x), 1)


def train_model(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
                val: tuple[torch.Tensor, torch.Tensor], config: TrainConfig, seed: int,
                device: torch.device | str = "cpu", progress: bool = True, desc: str = "train",
                active: Any = None, info: Any = None) -> list[dict]:
    """Train ``model`` in place; return the per-epoch history (loss, train and validation accuracy).

    ``active``: an :class:`~nnxai.active.base.ActiveMethod` instance whose hooks run in the loop (``setup``
    before the first step, ``penalty`` added to each batch's loss, ``after_step``, ``after_epoch``, whose
    values join the history, and ``finish`` after the last epoch, recorded as ``history[-1]["active"]``).
    """
    generator = seed_everything(seed)
    device = torch.device(device)
    model.to(device)
    x_train, y_train = train
    if active is not None:
        active.setup(model, train, info, device, seed)
    params = active.parameters_to_train(model) if active is not None else list(model.parameters())
    optimiser = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    penalty = config.penalty_term()
    history = []
    n = len(x_train)
    bar = tqdm(range(1, config.epochs + 1), desc=desc, disable=not progress, unit="epoch", mininterval=1.0)
    for epoch in bar:
        model.train()
        order = torch.randperm(n, generator=generator)
        total, seen = 0.0, 0
        for start in range(0, n, config.batch_size):
            idx = order[start:start + config.batch_size]
            xb, yb = x_train[idx].to(device), y_train[idx].to(device)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            if penalty is not None:
                loss = loss + config.penalty_weight * penalty(model, xb, yb, logits)
            if active is not None:
                term = active.penalty(model, xb, yb, logits)
                if term is not None:
                    loss = term if active.replaces_loss() else loss + term
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingDiverged(f"training diverged: the loss is {value} at epoch {epoch}, step "
                                       f"{start // config.batch_size + 1} (lr {config.lr:g}, weight decay "
                                       f"{config.weight_decay:g}, penalty weight {config.penalty_weight:g}); "
                                       "no checkpoint written: lower training.<arch>.lr")
            optimiser.step()
            if active is not None:
                active.after_step(model)
            total += value * len(idx)
            seen += len(idx)
        record = {"epoch": epoch, "loss": total / seen,
                  "train_accuracy": accuracy(model, x_train, y_train),
                  "val_accuracy": accuracy(model, *val) if len(val[0]) else float("nan")}
        if active is not None:
            record.update(active.after_epoch(model, epoch))
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", val=f"{record['val_accuracy']:.3f}")
    if active is not None:
        final = active.finish(model, train, val, device)
        if history and final:   # the final step may change the network (ProtoPNet's push, last layer)
            history[-1]["active"] = final
            history[-1]["val_accuracy"] = accuracy(model, *val) if len(val[0]) else float("nan")
    model.eval()
    return history
