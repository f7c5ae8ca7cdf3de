"""baselines.blocks: AdaIN statistics, colour matching, flow helpers, U-Net, spectral-norm model mixin."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines.blocks import (
    SFTUpBlock,
    SpectralNormModel,
    UNet,
    adain,
    calc_mean_std,
    color_match,
    grid_to_pixels,
    identity_grid,
    pixels_to_grid,
    resize_refs,
    sample_at_points,
    sn_conv2d,
    tv_loss,
    warp,
)


def test_adain_takes_style_statistics_and_broadcasts_a_single_style():
    g = torch.Generator().manual_seed(0)
    content = torch.randn(5, 4, 6, 6, generator=g) * 3 + 2
    style = torch.randn(1, 4, 6, 6, generator=g) * 0.5 - 1
    out = adain(content, style)
    om, os_ = calc_mean_std(out)
    sm, ss = calc_mean_std(style)
    assert out.shape == content.shape
    torch.testing.assert_close(om, sm.expand_as(om), atol=1e-5, rtol=0)
    torch.testing.assert_close(os_, ss.expand_as(os_), atol=1e-4, rtol=1e-4)
    # the releases' statistics: unbiased variance + 1e-5
    _m, s = calc_mean_std(style)
    torch.testing.assert_close(s.flatten(), (style.reshape(1, 4, -1).var(2, unbiased=True) + 1e-5).sqrt().flatten())


def test_color_match_matches_channel_statistics_exactly():
    g = torch.Generator().manual_seed(1)
    src = torch.rand(2, 3, 16, 16, generator=g) * 0.5
    tgt = torch.rand(2, 3, 16, 16, generator=g) * 0.3 + 0.4
    out = color_match(src, tgt)
    torch.testing.assert_close(out.mean((2, 3)), tgt.mean((2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std((2, 3), unbiased=False), tgt.std((2, 3), unbiased=False), atol=1e-4, rtol=0)


def test_identity_grid_warp_and_point_sampling_are_consistent():
    img = torch.rand(1, 3, 12, 10)
    grid = identity_grid(1, 12, 10)
    torch.testing.assert_close(warp(img, grid), img, atol=1e-6, rtol=0)
    pts = torch.tensor([[[0.0, 0.0], [3.0, 7.0], [9.0, 11.0], [4.5, 2.25]]])
    sampled = sample_at_points(grid.permute(0, 3, 1, 2), pts)  # the identity field sampled at pixels = their grid
    torch.testing.assert_close(sampled, pixels_to_grid(pts, 12, 10), atol=1e-6, rtol=0)
    torch.testing.assert_close(grid_to_pixels(pixels_to_grid(pts, 12, 10), 12, 10), pts, atol=1e-5, rtol=0)
    # sampling an image at integer pixels returns those pixels
    vals = sample_at_points(img, pts[:, :3])
    expect = torch.stack([img[0, :, 0, 0], img[0, :, 7, 3], img[0, :, 11, 9]])
    torch.testing.assert_close(vals[0], expect, atol=1e-6, rtol=0)


def test_tv_loss_zero_for_constant_flow_and_positive_otherwise():
    assert float(tv_loss(torch.full((2, 2, 8, 8), 0.3))) == 0.0
    assert float(tv_loss(torch.randn(2, 2, 8, 8))) > 0


def test_unet_shapes_zero_head_and_divisibility():
    net = UNet(6, 2, base=8, depth=4, max_ch=32, zero_init_head=True)
    out = net(torch.randn(2, 6, 32, 32))
    assert out.shape == (2, 2, 32, 32)
    assert float(out.detach().abs().max()) == 0.0
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.randn(1, 6, 24, 24))


def test_resize_refs_scales_landmarks():
    refs = [torch.rand(2, 3, 64, 64)]
    lms = [torch.full((2, 68, 2), 32.0)]
    r, lm = resize_refs(refs, lms, 32)
    assert r[0].shape == (2, 3, 32, 32)
    torch.testing.assert_close(lm[0], torch.full((2, 68, 2), 16.0))
    r2, lm2 = resize_refs(refs, None, 64)
    assert r2[0] is refs[0] and lm2 is None


class _Tiny(SpectralNormModel):
    def __init__(self):
        super().__init__()
        self.a = sn_conv2d(3, 8)
        self.up = SFTUpBlock(8, 4)
        self.finish_init()

    def forward(self, x):
        h = self.a(x)
        return self.up(h, h)


def test_spectral_norm_model_fresh_eval_sigma_and_deepcopy_after_training_forward():
    torch.manual_seed(0)
    m = _Tiny()
    w = m.a.weight_orig.detach().reshape(8, -1)
    sigma = torch.linalg.matrix_norm(w, ord=2)
    m.eval()
    m(torch.rand(1, 3, 8, 8))
    torch.testing.assert_close(torch.linalg.matrix_norm(m.a.weight.detach().reshape(8, -1), ord=2),
                               torch.tensor(1.0), atol=0.05, rtol=0)  # 15 power iterations
    assert sigma > 0
    m.train()
    out = m(torch.rand(1, 3, 8, 8))
    assert out.shape == (1, 4, 16, 16)
    twin = copy.deepcopy(m)  # non-leaf SN weights are swapped for detached copies meanwhile
    assert isinstance(twin, _Tiny)
    for (k, a), (_, b) in zip(m.state_dict().items(), twin.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)


def test_sft_block_blur_is_not_in_the_state_dict():
    blk = SFTUpBlock(4, 2)
    assert not any("kernel" in k for k in blk.state_dict())
    x = torch.ones(1, 4, 5, 5)
    # the blur keeps constants inside the image (padding only changes the border)
    assert torch.allclose(blk.conv[0](x)[..., 1:-1, 1:-1], torch.ones(1, 4, 3, 3))
    assert isinstance(blk.conv[2], nn.LeakyReLU) and blk.conv[2].negative_slope == pytest.approx(0.04)
    assert F.interpolate
