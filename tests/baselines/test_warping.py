"""baselines.warping: WLS guidance selection on real landmark files, MLS affine warping, landmark mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from baselines.warping import (
    EYE_REGION,
    MLS_POINTS,
    affine_residual,
    grid_for_sampling,
    landmark_point_mask,
    mls_affine_inverse_grid,
    mls_warp,
    select_guidance,
    select_references,
    wls_guidance_scores,
)
from tests.helpers import read_landmark_txt


def _affine(pts: torch.Tensor, a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return pts @ a.T + t


# --------------------------------------------------------------------------------------------- selection
def test_affine_residual_zero_for_an_exact_affine_copy():
    g = torch.Generator().manual_seed(0)
    src = torch.rand(3, 22, 2, generator=g) * 100
    a = torch.tensor([[1.1, 0.2], [-0.1, 0.9]])
    dst = _affine(src[1], a, torch.tensor([5.0, -3.0]))
    res = affine_residual(src, dst)
    assert float(res[1]) < 1e-3  # float32 inputs
    assert float(res[0]) > 1 and float(res[2]) > 1


def test_wls_selects_the_reference_whose_landmarks_match(celebref_examples):
    """Real landmark files of one identity (RefsLandmark/00121): the LQ landmarks are reference k's under a
    similarity transform plus small noise; the WLS score must pick k among all of that person's references."""
    files = sorted((celebref_examples / "RefsLandmark" / "00121").glob("*.txt"))
    assert len(files) >= 5
    refs = torch.from_numpy(np.stack([read_landmark_txt(f) for f in files])).double()
    g = torch.Generator().manual_seed(3)
    ang = 0.05
    a = 0.95 * torch.tensor([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]], dtype=torch.float64)
    for k in (0, len(files) // 2, len(files) - 1):
        lq = _affine(refs[k], a, torch.tensor([6.0, -4.0], dtype=torch.float64))
        lq = lq + torch.randn(68, 2, generator=g, dtype=torch.float64) * 0.3
        scores = wls_guidance_scores(lq, refs)
        assert select_guidance(lq, refs) == k
        assert int(torch.argsort(scores)[0]) == k
        # the weights: 1.01 eye region, 1.49 mouth
        eye = affine_residual(refs[:, list(EYE_REGION)], lq[list(EYE_REGION)])
        mouth = affine_residual(refs[:, 48:], lq[48:])
        torch.testing.assert_close(scores, 1.01 * eye + 1.49 * mouth)


def test_select_references_falls_back_to_first_without_landmarks():
    refs = [torch.rand(3, 3, 8, 8), torch.rand(1, 3, 8, 8)]
    guide, guide_lm, idx = select_references(refs, None, None)
    assert idx == [0, 0] and guide_lm is None
    torch.testing.assert_close(guide[0], refs[0][0])


# --------------------------------------------------------------------------------------------- MLS
def test_mls_is_exact_for_a_global_affine_map_in_the_authors_formulation():
    g = torch.Generator().manual_seed(1)
    src = torch.rand(51, 2, generator=g, dtype=torch.float64) * 24 + 4  # reference points
    a = torch.tensor([[1.05, 0.1], [-0.08, 0.97]], dtype=torch.float64)
    t = torch.tensor([1.5, -2.0], dtype=torch.float64)
    dst = _affine(src, a, t)  # where they land in the output
    coords = mls_affine_inverse_grid(src, dst, (32, 32), weights_from="source", clamp="none").double()
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    v = torch.stack([xs, ys], -1).double()
    expect = (v - t) @ torch.linalg.inv(a).T  # the inverse affine map
    torch.testing.assert_close(coords, expect.float().double(), atol=1e-3, rtol=0)


def test_mls_target_weights_map_control_points_exactly_onto_their_sources():
    g = torch.Generator().manual_seed(2)
    dst = torch.randint(3, 29, (12, 2), generator=g).double()  # integer output positions (grid points)
    dst = torch.unique(dst, dim=0)
    src = dst + torch.randn(dst.shape, generator=g, dtype=torch.float64) * 1.5  # a non-affine deformation
    coords = mls_affine_inverse_grid(src, dst, (32, 32), weights_from="target", clamp="none")
    got = coords[dst[:, 1].long(), dst[:, 0].long()].double()
    torch.testing.assert_close(got, src, atol=1e-3, rtol=0)


def test_mls_warp_moves_reference_content_onto_the_target_landmarks():
    """A feature with a bright dot at each reference control point, warped: the dots land on the targets."""
    s = 32
    g = torch.Generator().manual_seed(4)
    dst = torch.tensor([[8.0, 9.0], [22.0, 9.0], [15.0, 16.0], [10.0, 24.0], [21.0, 23.0]])
    src = dst + torch.tensor([[1.0, -1.0], [2.0, 0.0], [0.0, 1.0], [-1.0, 1.0], [1.0, 2.0]])
    feat = torch.zeros(1, 1, s, s)
    for x, y in src.long().tolist():
        feat[0, 0, y, x] = 1.0
    out = mls_warp(feat, src[None], dst[None], weights_from="target", clamp="none", convention="centers")
    for x, y in dst.long().tolist():
        assert float(out[0, 0, y, x]) > 0.9
    assert float(out.sum()) == pytest.approx(float(feat.sum()), abs=0.5)
    assert torch.rand(1, generator=g).shape == (1,)


def test_mls_authors_border_rule_and_grid_normalisation():
    src = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    dst = src + torch.tensor([20.0, 0.0])  # everything moves right by 20: left of x=20 samples x < 0
    coords = mls_affine_inverse_grid(src, dst, (16, 40), clamp="authors")
    assert float(coords[..., 0].min()) >= 0
    assert torch.all(coords[:, :20, 0] == 0)  # negative -> 0 (release rule)
    grid = grid_for_sampling(torch.tensor([[[[0.0, 0.0], [20.0, 8.0]]]]), (16, 40), "authors")
    torch.testing.assert_close(grid, torch.tensor([[[[-1.0, -1.0], [0.0, 0.0]]]]))
    assert MLS_POINTS == tuple(range(17, 68))


# --------------------------------------------------------------------------------------------- mask
def test_landmark_point_mask_squares_as_released():
    lm = torch.full((1, 68, 2), -100.0)  # points 0-16 are ignored anyway
    lm[0, 17] = torch.tensor([100.0, 50.0])  # integer: floor = ceil -> 6x6
    lm[0, 18] = torch.tensor([200.5, 300.5])  # fractional -> 7x7
    lm[0, 19] = torch.tensor([1.0, 50.0])  # x not > 1: skipped
    lm[0, 0] = torch.tensor([300.0, 300.0])  # jaw: not drawn
    m = landmark_point_mask(lm, 512)
    assert m.shape == (1, 1, 512, 512)
    assert float(m[0, 0, 47:53, 97:103].sum()) == 36 and float(m[0, 0, 40:60, 90:110].sum()) == 36
    assert float(m[0, 0, 297:304, 197:204].sum()) == 49
    assert float(m.sum()) == 36 + 49
