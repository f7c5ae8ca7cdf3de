"""GFRNet: warp + reconstruction, the landmark loss (zero for the right flow), TV, training requirements."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines import create_model
from baselines.blocks import grid_to_pixels, identity_grid, pixels_to_grid, sample_at_points
from baselines.gfrnet import PAPER, TINY, GFRNet, GFRNetConfig, landmark_loss
from baselines.warping import mls_affine_inverse_grid, select_guidance
from tests.helpers import read_landmark_txt

S = TINY.size


def _real_pair(celebref_examples, ident="00089"):
    files = sorted((celebref_examples / "RefsLandmark" / ident).glob("*.txt"))
    lms = [torch.from_numpy(read_landmark_txt(f) * S / 512).float() for f in files[:3]]
    return lms[0], torch.stack(lms[1:])


def test_landmark_loss_vanishes_for_the_flow_that_maps_gt_landmarks_onto_the_guide(celebref_examples):
    """The flow built by interpolating MLS from the LQ (= ground-truth) landmarks to the guide's landmarks makes
    the landmark loss ~0; the identity flow leaves the real misalignment between two photos of one person."""
    lq_lm, guide_lm = _real_pair(celebref_examples)
    guide_lm = guide_lm[:1]
    grid_px = mls_affine_inverse_grid(guide_lm, lq_lm[None], (S, S), weights_from="target", clamp="none")
    good = pixels_to_grid(grid_px, S, S)  # (1, S, S, 2) sampling grid
    ident = identity_grid(1, S, S)
    target = pixels_to_grid(guide_lm, S, S)
    loss_good = landmark_loss(sample_at_points(good.permute(0, 3, 1, 2), lq_lm[None]), target)
    loss_id = landmark_loss(sample_at_points(ident.permute(0, 3, 1, 2), lq_lm[None]), target)
    assert float(loss_id) > 1e-4  # a few pixels of real misalignment
    assert float(loss_good) < 0.05 * float(loss_id)
    # the model's outputs give the same number with that flow
    np.testing.assert_allclose(
        float(landmark_loss(sample_at_points(ident.permute(0, 3, 1, 2), lq_lm[None]), target)),
        float(((grid_to_pixels(pixels_to_grid(lq_lm, S, S), S, S) - guide_lm[0]) * 2 / S).pow(2).sum(-1).mean()),
        rtol=1e-4)


def test_training_the_warpnet_on_landmark_and_tv_losses_reduces_the_landmark_loss(celebref_examples):
    torch.manual_seed(0)
    lq_lm, refs_lm = _real_pair(celebref_examples)
    m = GFRNet(TINY).train()
    lq = torch.rand(1, 3, S, S)
    refs = [torch.rand(2, 3, S, S)]
    opt = torch.optim.Adam(m.warpnet.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        out = m.training_outputs(lq, lq_lm[None], refs, [refs_lm])
        extra = m.extra_losses(out, {})
        loss = extra["landmark"] + 0.1 * extra["tv"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(extra["landmark"].detach()))
    assert m.last_selection == [select_guidance(lq_lm, refs_lm)]
    assert losses[-1] < 0.5 * losses[0]


def test_outputs_flags_and_requirements():
    torch.manual_seed(0)
    m = create_model("gfrnet", "tiny")
    assert GFRNet.needs_references and not GFRNet.needs_landmarks and GFRNet.training_needs_landmarks
    lq = torch.rand(2, 3, S, S)
    refs = [torch.rand(2, 3, S, S), torch.rand(1, 3, S, S)]
    with torch.no_grad():
        out = m.restore(lq, refs=refs)  # no landmarks: the first reference guides
    assert out.shape == lq.shape and torch.isfinite(out).all() and 0 <= float(out.min()) <= float(out.max()) <= 1
    assert m.last_selection == [0, 0]
    with pytest.raises(ValueError, match="needs reference"):
        m.restore(lq)
    with pytest.raises(ValueError, match="training needs landmarks"):
        m.training_outputs(lq, None, refs, None)
    m.train()
    lm = torch.rand(2, 68, 2) * S
    out = m.training_outputs(lq, lm, refs, [lm[:1].repeat(2, 1, 1), lm[1:]])
    assert set(out) == {"restored", "warped_guide", "flow", "lm_pred", "lm_target"}
    # the WarpNet starts at the identity warp: the warped guide is the guide
    torch.testing.assert_close(out["warped_guide"][1], refs[1][0], atol=1e-5, rtol=0)
    assert float(m.extra_losses(out, {})["tv"].detach()) == 0.0
    total = out["restored"].mean() + sum(m.extra_losses(out, {}).values())
    total.backward()
    assert all(p.grad is not None for p in m.parameters())
    assert PAPER.size == 256
    with pytest.raises(ValueError):
        GFRNetConfig(size=100)
