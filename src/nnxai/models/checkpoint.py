"""Checkpoints: ``data/checkpoints/{dataset}/{model}.pt`` plus a ``.json`` record beside it.

The ``.pt`` file holds only tensors and plain Python values (architecture, config, seed, code version),
so it loads with ``torch.load(weights_only=True)``: no pickled code runs when a checkpoint is opened.
It is saved through an open file object and renamed into place, which keeps the bytes reproducible
(``torch.save`` names the archive's inner folder after the file name otherwise) and the write atomic.
The record is canonicalised first (keys sorted, rebuilt from its JSON text), so the bytes do not depend on
how the caller built it (a CLI call and a Snakemake job write the same file).

Integrity, checked on every load:

- the ``.pt`` carries ``payload_sha256``, the sha256 of its record and tensors (:func:`payload_digest`);
- the ``.json`` sidecar, when there is one, carries ``sha256``, the sha256 of the ``.pt`` file's bytes;
- the architecture (:func:`~nnxai.models.networks.check_arch`: sizes bounded) is checked before the
  network is built, and the weights must be finite float32 tensors.

A model of an active method (survey Sec. IV) is a registered network (:data:`~nnxai.models.networks.NETWORKS`:
a prototype layer, filter templates, a selector) named by ``architecture``, and may carry extra modules
that are not part of its forward pass (an APL surrogate, a prior network): the record lists them under
``extras`` (network name and arguments each) and their tensors are stored as ``extras/<name>/<tensor>``.
:func:`load_model` rebuilds them as ``model.extras``; a checkpoint without them (every one written before
active methods existed) loads with ``model.extras == {}``.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnxai.io import (
    BadFileError, atomic_write_bytes, atomic_write_json, canonical_json, read_json_object, rerun_hint,
    sha256_bytes, sha256_file,
)
from nnxai.models.networks import build_network, check_arch

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class CheckpointError(BadFileError, RuntimeError):
    """A checkpoint is missing, truncated, changed since it was written, or not one of ours."""


def sidecar_path(path: str | Path) -> Path:
    """The ``.json`` record beside checkpoint ``path``."""
    return Path(path).with_suffix(".json")


def payload_digest(record: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 of a checkpoint's canonical record and of each tensor's name, dtype, shape and bytes."""
    parts = [canonical_json(record)]
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        parts += [name.encode(), str(tensor.dtype).encode(), str(tuple(tensor.shape)).encode(),
                  tensor.numpy().tobytes()]
    return sha256_bytes(b"\0".join(parts))


EXTRAS_PREFIX = "extras/"


def save_checkpoint(path: str | Path, model: nn.Module, record: dict[str, Any],
                    sidecar: dict[str, Any] | None = None, extras: dict[str, nn.Module] | None = None) -> Path:
    """Write ``model``'s weights with ``record`` (must contain ``architecture`` and ``arch_kwargs``).

    ``extras``: modules saved beside the network (each built by ``build_network``: it knows its
    ``network_name`` and ``network_kwargs``).  With ``sidecar``, the ``.json`` record is written too, after
    the ``.pt``, with the ``.pt``'s sha256 added (an older sidecar is removed first, so a stale one never
    vouches for new weights).
    """
    for key in ("architecture", "arch_kwargs"):
        if key not in record:
            raise ValueError(f"checkpoint record needs {key!r}")
    check_arch(record["architecture"], dict(record["arch_kwargs"]))
    extras = dict(extras or {})
    if extras:
        record = {**record, "extras": {name: {"architecture": m.network_name, "arch_kwargs": m.network_kwargs}
                                       for name, m in sorted(extras.items())}}
    # Through JSON: sorted keys, and fresh objects, so pickle's memo (which refers back to an object seen
    # twice, e.g. one string shared by two keys) depends on the record's text, not on how it was built.
    clean = json.loads(canonical_json(record))
    for key in ("state_dict", "payload_sha256"):
        clean.pop(key, None)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    for name, module in extras.items():
        state.update({f"{EXTRAS_PREFIX}{name}/{k}": v.detach().cpu().clone() for k, v in module.state_dict().items()})
    payload = {**clean, "payload_sha256": payload_digest(clean, state), "state_dict": state}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    if sidecar is not None:
        sidecar_path(path).unlink(missing_ok=True)
    written = atomic_write_bytes(path, data)
    if sidecar is not None:
        atomic_write_json(sidecar_path(path), {**sidecar, "sha256": sha256_bytes(data)})
    return written


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(path, problem, _retrain_hint(path))


def _retrain_hint(path: Path) -> str:
    if path.parent.parent.name == "checkpoints":
        return rerun_hint(path)   # the train stage rewrites the .pt and its .json
    return "delete it and retrain the model"


def verify_sidecar(path: Path, required: bool = False) -> dict[str, Any] | None:
    """Check the ``.pt`` against the sha256 in its ``.json`` sidecar; return the sidecar (``None`` if absent
    and not ``required``)."""
    side = sidecar_path(path)
    if not side.is_file():
        if required:
            raise _fail(path, f"its record {side.name} is missing (an interrupted training writes the .pt first)")
        return None
    try:
        record = read_json_object(side, "checkpoint record", _retrain_hint(path))
    except BadFileError as err:
        raise CheckpointError(err.path, err.problem, _retrain_hint(path)) from err
    expected = record.get("sha256")
    if not isinstance(expected, str) or not _HEX64.match(expected):
        raise _fail(path, f"its record {side.name} carries no valid 'sha256' of the checkpoint (got {expected!r})")
    actual = sha256_file(path)
    if actual != expected:
        raise _fail(path, f"sha256 {actual[:12]}... does not match {expected[:12]}... recorded in {side.name} "
                          "(the file changed after training wrote it)")
    return record


def _torch_load(path: Path) -> Any:
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise _fail(path, f"not a readable checkpoint (not a torch zip archive; first bytes {head!r})")
    try:  # mmap: tensors stay on disk until the architecture has been checked
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 -- damaged bytes make torch's unpickler raise any type
        # (TypeError, IndexError, AssertionError, RuntimeError, ... seen when single bytes are flipped)
        raise _fail(path, f"not a readable checkpoint ({type(err).__name__}: "
                          f"{(str(err).splitlines() or [''])[0][:200]})") from err


def _check_state(path: Path, state: Any) -> None:
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise _fail(path, "'state_dict' is not a mapping of names to tensors")
    for name, tensor in state.items():
        if tensor.dtype != torch.float32:
            raise _fail(path, f"weight {name!r} has dtype {tensor.dtype}, expected torch.float32")
        if not bool(torch.isfinite(tensor).all()):
            raise _fail(path, f"weight {name!r} holds NaN or infinite values (training diverged?)")


def read_checkpoint(path: str | Path, require_sidecar: bool = False) -> dict[str, Any]:
    """The raw checkpoint dict, loaded safely and checked (see the module docstring).

    Raises
    ------
    CheckpointError
        Naming the file, what is wrong and how to remake it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no checkpoint at this path",
                              f"train it with `snakemake --cores 2 {path}` or `dvc pull {path.parent}`")
    verify_sidecar(path, require_sidecar)
    payload = _torch_load(path)
    if not isinstance(payload, dict) or "state_dict" not in payload or "architecture" not in payload:
        raise _fail(path, "not an nnxai checkpoint (no state_dict/architecture)")
    try:
        check_arch(payload["architecture"], payload.get("arch_kwargs"))
    except ValueError as err:
        raise _fail(path, f"architecture refused: {err}") from None
    _check_state(path, payload["state_dict"])
    record = {k: v for k, v in payload.items() if k not in ("state_dict", "payload_sha256")}
    stored = payload.get("payload_sha256")
    if stored is None:
        raise _fail(path, "carries no payload_sha256 (written before nnxai checked its checkpoints)")
    if stored != payload_digest(record, payload["state_dict"]):
        raise _fail(path, "its weights or record do not match the payload_sha256 stored with them")
    return payload


def load_model(path: str | Path, device: str | torch.device = "cpu", require_sidecar: bool = False) -> nn.Module:
    """Load a trained model in eval mode (public contract, re-exported as ``nnxai.load_model``).

    ``require_sidecar``: refuse a ``.pt`` without its ``.json`` record (the pipeline's stages do).
    """
    path = Path(path)
    payload = read_checkpoint(path, require_sidecar)
    state = payload["state_dict"]
    own = {k: v for k, v in state.items() if not k.startswith(EXTRAS_PREFIX)}
    model = _built(path, payload["architecture"], payload["arch_kwargs"], own, "architecture")
    described = payload.get("extras") or {}
    if not isinstance(described, dict):
        raise _fail(path, f"'extras' must map names to networks, got {described!r}")
    extras = {}
    for name, spec in sorted(described.items()):
        if not isinstance(spec, dict) or not {"architecture", "arch_kwargs"} <= set(spec):
            raise _fail(path, f"extra module {name!r} must name its architecture and arch_kwargs, got {spec!r}")
        prefix = f"{EXTRAS_PREFIX}{name}/"
        tensors = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        try:
            check_arch(spec["architecture"], spec["arch_kwargs"])
        except ValueError as err:
            raise _fail(path, f"extra module {name!r} refused: {err}") from None
        extras[name] = _built(path, spec["architecture"], spec["arch_kwargs"], tensors,
                              f"extra module {name!r}").to(device).eval()
    stray = sorted(k for k in state if k.startswith(EXTRAS_PREFIX) and k.split("/")[1] not in described)
    if stray:
        raise _fail(path, f"tensors {stray[:3]} belong to no extra module of the record")
    model.checkpoint = {k: v for k, v in payload.items() if k != "state_dict"}
    model.extras = extras
    return model.to(device).eval()


def _built(path: Path, architecture: str, kwargs: dict, state: dict, what: str) -> nn.Module:
    module = build_network(architecture, **kwargs)
    try:
        module.load_state_dict(state)   # copies out of the memory map
    except RuntimeError as err:
        raise _fail(path, f"weights do not fit {what} {architecture} "
                          f"({str(err).splitlines()[-1].strip()})") from None
    return module
