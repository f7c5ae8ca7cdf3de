"""GWAInet (our reconstruction): landmark-free exemplar choice, end-to-end warper, gated fusion."""

from __future__ import annotations

import pytest
import torch

from baselines import create_model
from baselines.gwainet import TINY, GWAInet, GWAInetConfig

S = TINY.size


def test_restore_without_landmarks_and_exemplar_choice():
    torch.manual_seed(0)
    m = create_model("gwainet", "tiny")
    assert GWAInet.needs_references and not GWAInet.needs_landmarks
    lq = torch.rand(2, 3, S, S)
    refs = [torch.cat([torch.rand(2, 3, S, S), lq[:1] * 0.98]), torch.rand(1, 3, S, S)]
    with torch.no_grad():
        out = m.restore(lq, refs=refs)
    assert out.shape == lq.shape and torch.isfinite(out).all() and 0 <= float(out.min()) <= float(out.max()) <= 1
    assert m.last_selection == [2, 0]  # the exemplar closest to the input at 16x16
    first = create_model("gwainet", {"base": "tiny", "exemplar_selection": "first"})
    with torch.no_grad():
        first.restore(lq, refs=refs)
    assert first.last_selection == [0, 0]
    with pytest.raises(ValueError, match="needs reference"):
        m.restore(lq)
    with pytest.raises(ValueError):
        GWAInetConfig(exemplar_selection="landmarks")


def test_warper_trains_end_to_end_from_the_identity_warp():
    torch.manual_seed(0)
    m = GWAInet(TINY).train()
    lq = torch.rand(1, 3, S, S)
    refs = [torch.rand(2, 3, S, S)]
    out = m.training_outputs(lq, None, refs, None)
    assert set(out) == {"restored", "warped_exemplar", "flow"}
    torch.testing.assert_close(out["warped_exemplar"][0], refs[0][m.last_selection[0]], atol=1e-5, rtol=0)
    extra = m.extra_losses(out, {})
    assert set(extra) == {"tv"} and float(extra["tv"]) == 0.0
    (out["restored"] - lq).abs().mean().backward()
    assert m.warper.head.weight.grad is not None and float(m.warper.head.weight.grad.abs().sum()) > 0
    assert all(p.grad is not None for p in m.parameters())
