"""CAM [138], Grad-CAM and Guided Grad-CAM [103], occlusion [72]: identities, independent
re-implementations and closed-form cases on toy models with hand-set or seeded weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnxai import registry
from nnxai.data import PreparedSplit
from nnxai.methods.attribution.gradient.cam import class_activation_map
from nnxai.methods.attribution.gradient.grad_cam import grad_cam_map
from nnxai.ops.maps import saliency_map
from nnxai.methods.attribution.perturbation.occlusion import window_counts
from nnxai.methods.base import model_traits
from nnxai.params import ParamError
from toy_models import LinearModel, RegionSumModel, tiny_convnet, tiny_mlp, toy_context


def method(method_id, **overrides):
    params = {"n_explain": 5, "batch_size": 3}
    if method_id == "occlusion":
        params.update(window=2, stride=1, fill="zero")
    params.update(overrides)
    return registry.get(method_id)(**params)


def fitted(m, model, x_train):
    """Method ``m`` fitted for ``model`` on a train split holding ``x_train`` (labels 0)."""
    return m.fit(model, PreparedSplit(x=x_train, y=torch.zeros(len(x_train), dtype=torch.long)))


def images(n=5, size=16, seed=0, channels=3):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def bilinear(maps, size):
    """Independent upsampling: torch's bilinear interpolation, corners not aligned (Captum's call)."""
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


# ---------------------------------------------------------------- CAM
def test_cam_global_average_plus_bias_is_the_logit():
    model = tiny_convnet(seed=4).double()
    x = images()
    logits = model(x).detach()
    for c in range(logits.shape[1]):
        target = torch.full((len(x),), c)
        cam = class_activation_map(model, x, target)
        assert cam.shape == (len(x), 1, 4, 4)             # 16 -> pool -> 8 -> pool -> 4
        reconstructed = cam.mean(dim=(1, 2, 3)) + model.classifier.bias[c]
        torch.testing.assert_close(reconstructed, logits[:, c], rtol=1e-12, atol=1e-12)


def test_cam_attribution_is_the_bilinear_upsampled_map_in_every_channel():
    model = tiny_convnet(seed=5).double()
    x, target = images(), torch.tensor([0, 1, 2, 1, 0])
    out = method("cam")(model, x, target)
    assert out.shape == x.shape and out.dtype == x.dtype
    expected = bilinear(class_activation_map(model, x, target), (16, 16))
    for ch in range(3):
        torch.testing.assert_close(out[:, ch:ch + 1], expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(saliency_map(out), expected[:, 0], rtol=1e-12, atol=1e-12)
    assert (out < 0).any(), "CAM is signed (no ReLU in [138])"


def test_cam_needs_a_cnn_with_gap_head():
    model = tiny_mlp()
    ctx = toy_context(model, torch.randn(4, 6), torch.randn(3, 6), 3)
    assert registry.get("cam").why_not(ctx.info, model_traits(model)) is not None
    with pytest.raises(ValueError, match="does not apply"):
        method("cam").explain(ctx)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) images"):
        method("cam")(model, torch.randn(2, 6), torch.tensor([0, 1]))


# ---------------------------------------------------------------- Grad-CAM
def test_grad_cam_is_relu_cam_over_z_for_a_gap_head():
    """[103] Sec. 3.1: with GAP + linear, alpha_k^c = w_k^c / Z, so Grad-CAM = ReLU(CAM) / Z exactly."""
    model = tiny_convnet(seed=6).double()
    x = images(seed=1)
    for c in range(3):
        target = torch.full((len(x),), c)
        cam = class_activation_map(model, x, target)
        gc = grad_cam_map(model, x, target)
        z = cam.shape[2] * cam.shape[3]
        torch.testing.assert_close(gc * z, cam.clamp(min=0), rtol=1e-10, atol=1e-12)
    out = method("grad_cam")(model, x, target)
    torch.testing.assert_close(out, bilinear(cam.clamp(min=0) / z, (16, 16)).expand_as(x), rtol=1e-10, atol=1e-12)


class FlattenHeadCNN(nn.Module):
    """conv-ReLU-flatten-linear: no GAP, so Grad-CAM's per-position gradients differ from a CAM."""

    architecture = "cnn"

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv, self.act = nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU()
        self.head = nn.Linear(4 * 4 * 4, 3)

    @property
    def last_conv_layer(self):
        return self.act

    def forward(self, x):
        return self.head(self.act(self.conv(x)).flatten(1))


def test_grad_cam_matches_eqs_1_and_2_on_a_non_gap_head():
    model = FlattenHeadCNN().double().eval()
    x, target = images(4, size=8, seed=2), torch.tensor([0, 1, 2, 0])
    acts = model.act(model.conv(x))
    score = model.head(acts.flatten(1)).gather(1, target[:, None]).sum()
    grads, = torch.autograd.grad(score, acts)
    alpha = grads.mean(dim=(2, 3), keepdim=True)                       # Eq. 1
    expected = (alpha * acts).sum(dim=1, keepdim=True).clamp(min=0)    # Eq. 2
    torch.testing.assert_close(grad_cam_map(model, x, target), expected.detach(), rtol=1e-10, atol=1e-12)
    out = method("grad_cam")(model, x, target)
    torch.testing.assert_close(out, bilinear(expected.detach(), (8, 8)).expand_as(x), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- Guided Grad-CAM
def relu_net_with_a_silent_class():
    """A seeded ReLU ConvNet whose class 0 has only negative weights: its CAM, hence Grad-CAM, is 0 everywhere."""
    model = tiny_convnet(seed=7).double()
    with torch.no_grad():
        model.classifier.weight[0] = -model.classifier.weight[0].abs() - 0.1
    return model


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
def test_guided_grad_cam_is_guided_backprop_times_upsampled_grad_cam():
    from captum.attr import GuidedBackprop, LayerGradCam

    model = relu_net_with_a_silent_class()
    x, target = images(6, seed=3), torch.tensor([1, 2, 1, 2, 0, 1])
    out = method("guided_grad_cam")(model, x, target)
    gb = GuidedBackprop(model).attribute(x.clone().requires_grad_(True), target=target)
    gc = LayerGradCam(model, model.last_conv_layer).attribute(x.clone(), target=target, relu_attributions=True)
    up = bilinear(gc, (16, 16))
    torch.testing.assert_close(out, gb * up, rtol=1e-10, atol=1e-12)
    nearest = F.interpolate(gc, size=(16, 16), mode="nearest")
    assert not torch.allclose(out, gb * nearest), "the upsampling must be bilinear ([103] Sec. 3.2)"
    zero = (up == 0).expand_as(out)
    assert zero[4].all() and zero.sum() > zero[4].sum()  # the silent class, and some zeros elsewhere
    assert (out[zero] == 0).all() and (out[~zero] != 0).any()


def test_guided_grad_cam_needs_relu_and_grad_cam_does_not():
    model = tiny_convnet(activation="sigmoid")
    ctx = toy_context(model, torch.rand(4, 3, 8, 8), torch.rand(3, 3, 8, 8), 3)
    assert "relu" in registry.get("guided_grad_cam").why_not(ctx.info, model_traits(model))
    assert registry.get("grad_cam").why_not(ctx.info, model_traits(model)) is None
    with pytest.raises(ValueError, match="last_conv_layer"):
        method("grad_cam")(LinearModel(torch.ones(2, 3 * 8 * 8)), torch.rand(2, 3, 8, 8), torch.tensor([0, 1]))


# ---------------------------------------------------------------- Occlusion
def test_occlusion_of_a_single_pixel_region_closed_form():
    """Logit = sum of the 3 channels of pixel p.  A 2x2 window with stride 1 drops x_p (summed over
    channels) iff it holds p; q is covered by 4 windows (interior), (2-|dr|)(2-|dc|) of which hold p,
    so A(q) = x_p (2-|dr|)(2-|dc|) / 4 within one pixel of p, and 0 farther away."""
    p = (3, 2)
    region = torch.zeros(1, 7, 7)
    region[0, p[0], p[1]] = 1.0
    model = RegionSumModel(region)
    x = torch.rand(2, 3, 7, 7, generator=torch.Generator().manual_seed(0))
    out = fitted(method("occlusion"), model, x)(model, x, torch.tensor([1, 1]))
    rows, cols = torch.meshgrid(torch.arange(7), torch.arange(7), indexing="ij")
    dr, dc = (rows - p[0]).abs(), (cols - p[1]).abs()
    factor = ((2 - dr).clamp(min=0) * (2 - dc).clamp(min=0)).float() / 4
    expected = x[:, :, p[0], p[1]].sum(1)[:, None, None, None] * factor
    torch.testing.assert_close(out, expected.expand_as(x), rtol=1e-6, atol=1e-6)
    assert (out[:, :, (dr > 1) | (dc > 1)] == 0).all()


def test_occlusion_of_a_block_region_with_tiled_windows_and_a_mean_fill():
    """Windows = stride = 2 tile the 6x6 image; each pixel's attribution is the drop of its own tile,
    Σ over the tile's region pixels and channels of (x − fill); tiles outside the region give 0."""
    region = torch.zeros(1, 6, 6)
    region[0, 1:4, 1:4] = 1.0
    model = RegionSumModel(region, scale=2.0)
    x = torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(1))
    fill = torch.tensor([0.25, -0.5]).reshape(1, 2, 1, 1).expand(1, 2, 6, 6)
    occlusion = fitted(method("occlusion", window=2, stride=2, fill="mean"), model, x)
    out = occlusion(model, x, torch.tensor([1, 1, 1]), fill)
    per_pixel = 2.0 * ((x - fill) * region).sum(1, keepdim=True)
    tile_drop = F.avg_pool2d(per_pixel, 2) * 4
    expected = tile_drop.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3).expand_as(x)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    assert (out[:, :, :, 4:] == 0).all() and (out[:, :, 4:, :] == 0).all()


def test_occlusion_covers_the_edge_with_a_cropped_last_window():
    assert window_counts(7, 2, 2) == 4 and window_counts(8, 2, 2) == 4 and window_counts(8, 8, 8) == 1
    region = torch.zeros(1, 7, 7)
    region[0, 6, 6] = 1.0
    x = torch.rand(1, 1, 7, 7, generator=torch.Generator().manual_seed(2))
    model = RegionSumModel(region)
    out = fitted(method("occlusion", window=2, stride=2), model, x)(model, x, torch.tensor([1]))
    expected = torch.zeros_like(x)
    expected[0, 0, 6, 6] = x[0, 0, 6, 6]               # the last window is the single pixel (6, 6)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


def test_occlusion_on_a_linear_table_is_w_times_x_minus_fill():
    weight = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.0, 1.5, -1.0, 2.0]])
    model = LinearModel(weight, bias=torch.tensor([0.3, -0.2]))
    gen = torch.Generator().manual_seed(3)
    x_train, x_test = torch.randn(20, 4, generator=gen) + 1.0, torch.randn(6, 4, generator=gen)
    ctx = toy_context(model, x_train, x_test, 2)
    # window/stride are image-only: a tabular input is occluded one feature at a time
    record = method("occlusion", window=3, stride=3, fill="mean", n_explain=6).explain(ctx)
    means = x_train.double().mean(0).float()
    assert record.meta["baseline"] == {"kind": "mean", "per_channel": [float(v) for v in means]}
    targets = torch.as_tensor(record.targets)
    expected = weight[targets] * (x_test[torch.as_tensor(record.indices)] - means)
    np.testing.assert_allclose(record.attributions, expected.numpy(), rtol=1e-5, atol=1e-6)
    zero = fitted(method("occlusion", fill="zero"), model, x_train)(model, x_test, targets)
    torch.testing.assert_close(zero, weight[targets] * x_test[torch.as_tensor(record.indices)], rtol=1e-5, atol=1e-6)


def test_occlusion_explain_uses_the_train_mean_per_channel():
    region = torch.zeros(1, 8, 8)
    region[0, 2:6, 2:6] = 1.0
    model = RegionSumModel(region)
    gen = torch.Generator().manual_seed(4)
    x_train, x_test = torch.rand(10, 3, 8, 8, generator=gen), torch.rand(4, 3, 8, 8, generator=gen)
    m = method("occlusion", window=4, stride=2, fill="mean", n_explain=4)
    record = m.explain(toy_context(model, x_train, x_test, 2))
    means = x_train.double().mean(dim=(0, 2, 3)).float()
    assert record.meta["baseline"]["per_channel"] == [float(v) for v in means]
    targets = torch.as_tensor(record.targets)
    again = m(model, x_test, targets, means.reshape(1, 3, 1, 1).expand(1, 3, 8, 8))
    np.testing.assert_allclose(record.attributions, again.numpy(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(m.reference_, means.reshape(1, 3, 1, 1).expand(1, 3, 8, 8))
    np.testing.assert_allclose(record.attributions, m(model, x_test, targets).numpy(), rtol=0, atol=0)


def test_occlusion_learns_its_fill_and_refuses_to_explain_unfitted():
    model, x = RegionSumModel(torch.ones(1, 4, 4)), torch.rand(2, 3, 4, 4)
    m = method("occlusion", fill="mean")
    with pytest.raises(RuntimeError, match=r"'occlusion' learns from the train split: call fit\(model, train_split\)"):
        m(model, x, torch.tensor([1, 1]))
    with pytest.raises(RuntimeError, match=r"fill='mean'.*fit\(model, train_split\) first"):
        m.attribute(model, x, torch.tensor([1, 1]))
    fitted(m, model, x)
    with pytest.raises(RuntimeError, match="for this model"):
        m(RegionSumModel(torch.ones(1, 4, 4)), x, torch.tensor([1, 1]))


@pytest.mark.parametrize("overrides, message", [
    ({"fill": "grey"}, r"'occlusion'\.fill: 'grey' is not one of 'zero', 'mean'"),
    ({"stride": 3, "window": 2}, r"'occlusion': parameter 'stride' \(3\) must not exceed 'window' \(2\)"),
    ({"window": 0}, r"'occlusion'\.window: 0 is out of range, expected >= 1"),
])
def test_occlusion_rejects_bad_parameters(overrides, message):
    with pytest.raises(ParamError, match=message):
        method("occlusion", **overrides)


def test_occlusion_rejects_a_window_larger_than_the_image():
    model = RegionSumModel(torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match=r"'window' \(5\) exceeds the image size"):
        x = torch.rand(1, 1, 4, 4)
        fitted(method("occlusion", window=5, stride=2), model, x)(model, x, torch.tensor([1]))
