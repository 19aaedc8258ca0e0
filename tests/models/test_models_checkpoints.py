"""Networks, checkpoints and deterministic training."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import nnxai
from nnxai.models import CheckpointError, ConvNet, MLP, build_network, load_model, save_checkpoint, variant
from nnxai.models.checkpoint import verify_sidecar
from nnxai.training.trainer import TrainConfig, train_model


def test_convnet_is_fit_for_the_methods():
    model = ConvNet(3, 4)
    acts = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(acts) == 3 and len({id(a) for a in acts}) == 3          # one module per use
    assert not any(getattr(a, "inplace", False) for a in acts)
    assert isinstance(model.gap, nn.AdaptiveAvgPool2d) and isinstance(model.classifier, nn.Linear)
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model(x), model.classifier(model.embed(x)))
    # CAM identity: the logit equals the GAP of the class-weighted feature maps plus the bias.
    maps = model.feature_maps(x)
    cam = torch.einsum("k,nkhw->nhw", model.classifier.weight[1], maps).mean((1, 2)) + model.classifier.bias[1]
    assert torch.allclose(cam, model(x)[:, 1], atol=1e-5)
    assert list(model.unit_layers()) == ["conv1", "conv2", "conv3"]
    assert ConvNet(1, 10)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_mlp_variants():
    relu, sig = MLP(4, 3), MLP(4, 3, activation="sigmoid")
    assert any(isinstance(m, nn.Sigmoid) for m in sig.modules()) and not any(isinstance(m, nn.Sigmoid) for m in relu.modules())
    with pytest.raises(ValueError, match="'tanh'"):
        MLP(4, 3, activation="tanh")
    with pytest.raises(ValueError, match="'vit'"):
        build_network("vit")


def test_variants():
    assert variant("l1").penalty == "l1"
    assert variant("baseline_seed3").seed_offset == 3
    assert variant("baseline_shuffled_labels").shuffle_labels
    with pytest.raises(ValueError, match="'resnet'"):
        variant("resnet")


def test_variants_are_a_registry():
    from nnxai.models import VARIANTS
    from nnxai.models.variants import variant_pattern

    from nnxai.active.base import ACTIVE

    assert list(VARIANTS)[:5] == ["baseline", "baseline_sigmoid", "l1", "l2", "baseline_shuffled_labels"]
    assert set(list(VARIANTS)[5:]) == set(ACTIVE)    # one variant per active method (nnxai.active)
    assert variant("baseline_seed2").activation == "relu" and "baseline_seed2" not in VARIANTS
    names = "|".join(sorted(["baseline", "baseline_shuffled_labels", "baseline_sigmoid", "l1", "l2", *ACTIVE]))
    assert variant_pattern() == rf"^({names}|baseline_seed\d+)$"


@pytest.fixture
def toy_variant():
    """A variant with its own training loss, registered in one place (as an active method would)."""
    from nnxai.models import VARIANTS, Variant
    from nnxai.models.variants import variant_pattern
    from nnxai.training.penalties import PENALTIES

    calls = []

    @PENALTIES.register("toy_logit_norm")
    def toy_logit_norm(model, inputs, targets, logits):
        calls.append((inputs.shape, targets.shape, logits.shape))
        return logits.pow(2).mean()

    VARIANTS.register("toy_active", Variant("toy_active", "test toy", penalty="toy_logit_norm"))
    yield calls
    VARIANTS.unregister("toy_active")
    PENALTIES.unregister("toy_logit_norm")
    assert "toy_active" not in variant_pattern()


def test_a_registered_variant_trains_with_its_own_penalty(toy_variant):
    from nnxai.models.variants import variant_pattern

    assert variant("toy_active").penalty == "toy_logit_norm" and "toy_active" in variant_pattern()
    x, y = _toy_data(64)
    logit_norms = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = MLP(4, 2)
        train_model(model, (x, y), (x[:8], y[:8]), TrainConfig(epochs=5, batch_size=32, lr=0.05,
                    penalty=variant("toy_active").penalty, penalty_weight=weight), seed=0, progress=False)
        logit_norms[weight] = model(x).pow(2).mean().item()
    assert toy_variant and toy_variant[0] == (torch.Size([32, 4]), torch.Size([32]), torch.Size([32, 2]))
    assert len(toy_variant) == 5 * 2                   # called on every batch, only when its weight is > 0
    assert logit_norms[1.0] < logit_norms[0.0]


def _toy_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def test_training_is_deterministic_and_learns():
    x, y = _toy_data(256)
    cfg = TrainConfig(epochs=30, batch_size=32, lr=0.01)
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        model = MLP(4, 2)
        history = train_model(model, (x, y), (x[:64], y[:64]), cfg, seed=5, progress=False)
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert history[-1]["train_accuracy"] > 0.95 > history[0]["train_accuracy"] - 0.5


def test_l1_penalty_shrinks_weights():
    x, y = _toy_data(256)
    norms = {}
    for penalty, weight in (("none", 0.0), ("l1", 0.05)):
        torch.manual_seed(0)
        model = MLP(4, 2)
        train_model(model, (x, y), (x[:8], y[:8]), TrainConfig(epochs=20, batch_size=32, lr=0.01, penalty=penalty,
                    penalty_weight=weight), seed=0, progress=False)
        norms[penalty] = sum(p.abs().sum().item() for n, p in model.named_parameters() if n.endswith("weight"))
    assert norms["l1"] < 0.5 * norms["none"]


def test_bad_training_config():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="'l3'"):
        TrainConfig(penalty="l3")


def test_checkpoint_roundtrip_bytes_and_safety(tmp_path):
    torch.manual_seed(0)
    model = build_network("cnn", in_channels=3, n_classes=2)     # the layout load_model rebuilds (channels last)
    record = {"architecture": "cnn", "arch_kwargs": {"in_channels": 3, "n_classes": 2, "widths": [16, 32, 64],
                                                     "activation": "relu"}, "seed": 0}
    a, b = save_checkpoint(tmp_path / "a.pt", model, record), save_checkpoint(tmp_path / "sub/b.pt", model, record)
    assert a.read_bytes() == b.read_bytes()                 # same content, same bytes, whatever the name
    loaded = nnxai.load_model(a)
    assert not loaded.training and loaded.checkpoint["seed"] == 0
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), model.eval()(x))
    assert not list(tmp_path.glob(".*.tmp"))                # no temp files left behind


def test_corrupted_or_missing_checkpoints_fail_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_model(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(bad)
    buffer = io.BytesIO()
    torch.save({"weights": torch.zeros(1)}, buffer)
    (tmp_path / "foreign.pt").write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointError, match="not an nnxai checkpoint"):
        load_model(tmp_path / "foreign.pt")


def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    from nnxai import io as nio

    target = tmp_path / "result.json"
    nio.atomic_write_json(target, {"ok": 1})

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with nio.atomic_open(target, "w") as handle:
            handle.write('{"half": ')
            raise Boom
    assert json.loads(target.read_text()) == {"ok": 1}
    assert not list(tmp_path.glob(".*.tmp"))


def _with_extras(tmp_path):
    model = build_network("mlp", n_features=4, n_classes=2, hidden=[5])
    surrogate = build_network("mlp", n_features=7, n_classes=1, hidden=[3])
    record = {"architecture": "mlp", "arch_kwargs": model.network_kwargs, "active": None}
    path = save_checkpoint(tmp_path / "m.pt", model, record, sidecar=record, extras={"surrogate": surrogate})
    return path, model, surrogate


def test_extra_modules_round_trip(tmp_path):
    """An active method's extra module (an APL surrogate, a prior network) is saved with the network and
    rebuilt by load_model as model.extras, weights equal; the network loads without it."""
    path, model, surrogate = _with_extras(tmp_path)
    loaded = load_model(path, require_sidecar=True)
    assert set(loaded.extras) == {"surrogate"}
    rebuilt = loaded.extras["surrogate"]
    assert rebuilt.network_name == "mlp" and rebuilt.network_kwargs == surrogate.network_kwargs
    for (name, a), (_, b) in zip(surrogate.state_dict().items(), rebuilt.state_dict().items()):
        assert torch.equal(a, b), name
    assert not any(name.startswith("extras") for name in loaded.state_dict())
    x = torch.randn(3, 4)
    assert torch.equal(loaded(x), model.eval()(x))
    assert loaded.checkpoint["extras"] == {"surrogate": {"architecture": "mlp", "arch_kwargs": surrogate.network_kwargs}}


def test_checkpoints_without_extras_load_with_none(tmp_path):
    model = build_network("mlp", n_features=4, n_classes=2, hidden=[5])
    path = save_checkpoint(tmp_path / "plain.pt", model, {"architecture": "mlp", "arch_kwargs": model.network_kwargs})
    assert load_model(path).extras == {}


def test_extra_module_described_badly_is_refused(tmp_path):
    path, _, _ = _with_extras(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["extras"]["surrogate"]["arch_kwargs"]["hidden"] = [10 ** 6] * 20   # a crafted, huge description
    from nnxai.models.checkpoint import payload_digest
    record = {k: v for k, v in payload.items() if k not in ("state_dict", "payload_sha256")}
    payload["payload_sha256"] = payload_digest(record, payload["state_dict"])
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    (tmp_path / "bad.pt").write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointError, match="extra module 'surrogate' refused"):
        load_model(tmp_path / "bad.pt")


def test_networks_keep_channels_last_weights_and_their_values():
    """build_network (and so load_model and the trainer) lays a CNN's 4-d weights out channels-last, for
    speed only: the outputs and input gradients equal those of the default layout to float rounding."""
    torch.manual_seed(0)
    fast = build_network("cnn", in_channels=3, n_classes=4)
    assert fast.features.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    plain = ConvNet(3, 4)
    plain.load_state_dict(fast.state_dict())
    assert plain.features.conv1.weight.is_contiguous()
    x = torch.randn(5, 3, 32, 32, requires_grad=True)
    y = x.detach().clone().requires_grad_()
    torch.testing.assert_close(fast(x), plain(y), rtol=1e-5, atol=1e-6)
    fast(x)[:, 1].sum().backward()
    plain(y)[:, 1].sum().backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-4, atol=1e-6)
    mlp = build_network("mlp", n_features=4, n_classes=3, hidden=[8])
    assert all(p.is_contiguous() for p in mlp.parameters())      # no convolution: nothing changes


OLD_CHECKPOINTS = Path(__file__).parent / "fixtures" / "old_checkpoints"


@pytest.mark.parametrize("cell", ["shapes_baseline", "causal_baseline_sigmoid"])
def test_pre_active_checkpoints_still_load(cell):
    """Checkpoints written by commit 65568b5, before the active methods and their extra modules (see
    fixtures/README.md), load with today's public ``nnxai.load_model`` and pass the pipeline's sidecar check
    (the ``.pt``'s sha256 in the old ``.json``): no extras, the same record, and the old code's predictions on the saved test inputs (logits to float rounding: another CPU may round
    differently; classes exactly)."""
    expected = np.load(OLD_CHECKPOINTS / "expected.npz")
    model = nnxai.load_model(OLD_CHECKPOINTS / f"{cell}.pt")
    assert model.extras == {} and "extras" not in model.checkpoint and not model.training
    sidecar = verify_sidecar(OLD_CHECKPOINTS / f"{cell}.pt", required=True)
    assert model.checkpoint["architecture"] == sidecar["architecture"]
    assert model.checkpoint["arch_kwargs"] == sidecar["arch_kwargs"]
    with torch.no_grad():
        logits = model(torch.from_numpy(expected[f"{cell}.x"]))
    torch.testing.assert_close(logits, torch.from_numpy(expected[f"{cell}.logits"]), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(logits.argmax(1).numpy(), expected[f"{cell}.classes"])
