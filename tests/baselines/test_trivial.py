"""Trivial references: bicubic (identity at the test-set size) and the colour-matched best reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from baselines import create_model
from baselines.trivial import Bicubic, RefColorMatch
from baselines.warping import select_guidance
from tests.helpers import read_landmark_txt


def test_bicubic_is_identity_at_its_size_and_bicubic_otherwise():
    m = create_model("bicubic", "paper")
    assert not Bicubic.trainable and not list(m.parameters()) and m.input_size == 512
    lq = torch.rand(2, 3, 512, 512)
    out = m.restore(lq)
    assert torch.equal(out, lq) and out is not lq
    small = torch.rand(1, 3, 64, 64)
    expect = F.interpolate(small, size=(512, 512), mode="bicubic", align_corners=False).clamp(0, 1)
    assert torch.equal(m.restore(small), expect)
    tiny = create_model("bicubic", "tiny")
    assert tiny.input_size == 128 and torch.equal(tiny.restore(lq[:, :, :128, :128]), lq[:, :, :128, :128])


def test_ref_colormatch_copies_the_best_reference_with_the_inputs_colour_statistics(celebref_examples):
    m = create_model("ref_colormatch", "tiny")
    assert RefColorMatch.needs_references and not RefColorMatch.trainable and not list(m.parameters())
    s = 128
    files = sorted((celebref_examples / "RefsLandmark" / "00146").glob("*.txt"))[:4]
    lms = torch.from_numpy(np.stack([read_landmark_txt(f) for f in files]) * s / 512).float()
    g = torch.Generator().manual_seed(0)
    lq = torch.rand(1, 3, s, s, generator=g) * 0.5 + 0.2
    refs = torch.rand(3, 3, s, s, generator=g)
    lq_lm = lms[2:3] + 0.2  # the input is posed like reference index 1 (file 2)
    out = m.restore(lq, lq_lm, [refs], [lms[1:]])
    k = select_guidance(lq_lm[0], lms[1:])
    assert k == 1 and m.last_selection == [1]
    torch.testing.assert_close(out.mean((2, 3)), lq.mean((2, 3)), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std((2, 3), unbiased=False), lq.std((2, 3), unbiased=False), atol=1e-3, rtol=0)
    # the structure is the reference's: correlation with it is ~1
    a, b = out[0].flatten() - out[0].mean(), refs[k].flatten() - refs[k].mean()
    assert float((a @ b) / (a.norm() * b.norm())) > 0.99
    # without landmarks: the first reference
    m.restore(lq, None, [refs], None)
    assert m.last_selection == [0]
    # references at another size are resized
    big = F.interpolate(refs, size=(256, 256), mode="bilinear")
    assert m.restore(lq, None, [big], None).shape == (1, 3, s, s)
    with pytest.raises(ValueError, match="needs reference"):
        m.restore(lq)
