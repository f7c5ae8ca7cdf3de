"""Landmark-based alignment of references: guidance selection by weighted least squares, moving-least-squares
(MLS) affine warping, and the landmark point mask. Written from ASFFNet (CVPR 2020) and the authors' ASFFNet512
release (``main_test.py``: ``cal_sim``, ``generate_lq_point_mask``; ``utils/ROI_MLS.py``:
``mls_affine_deformation_inv_final``, ``roi_mls_whole_final``), in torch, batched, on the inputs' device.

Coordinates are pixels (x, y) with pixel centres at integers, as the authors' landmark files and the 68-point
detectors give them.

**Guidance selection** (:func:`wls_guidance_scores`): per reference, a 2-D affine map reference -> LQ is fitted by
least squares separately on the eye region (brows 17-26 + eyes 36-47, 22 points) and on the mouth (48-67, 20
points); score = 1.01 * ||eye residual||_F + 1.49 * ||mouth residual||_F (the weights the paper learned for its
"weighted least squares" selection); the reference with the lowest score is the guidance.

**MLS affine warping** (:func:`mls_affine_inverse_grid`): Schaefer et al.'s affine moving least squares. For each
pixel v of the *output* (LQ) frame it gives the position in the reference to sample from. With weights
w_i = 1 / |p_i - v|^(2 alpha) (alpha = 1), p_i the reference ("source") control points and q_i the LQ ("target")
ones, the authors' inverse is ``(v - q*) (P^T W Q)^-1 (P^T W P) + p*`` (the inverse of the local forward affine map,
with the weights evaluated at v against the *source* points; ``weights_from="source"``, the default). It is
exact wherever the two point sets differ by one global affine map. ``weights_from="target"`` computes the MLS map
from the target points to the source points instead (weights against q_i), which interpolates: each target
control point maps exactly onto its source point. ``clamp="authors"`` reproduces the release's border handling
(any coordinate < 0 becomes 0; x > W-1 or y > H-1 becomes 0); :func:`grid_for_sampling` converts to grid_sample
coordinates as the release does, ``(g - H/2) / (H/2)`` with ``align_corners=False``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: eye region (brows + eyes) and mouth of the 68-point scheme, as used by the WLS guidance selection
EYE_REGION = tuple(range(17, 27)) + tuple(range(36, 48))
MOUTH_REGION = tuple(range(48, 68))
#: ASFFNet512's learned weights of the eye and mouth residuals
WLS_WEIGHTS = (1.01, 1.49)
#: MLS control points: every landmark but the jaw line (17-67, 51 points)
MLS_POINTS = tuple(range(17, 68))


# ------------------------------------------------------------------------------------------- guidance selection
def affine_residual(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of the least-squares affine fit residual of ``src`` (N, k, 2) onto ``dst`` (k, 2) or
    (N, k, 2) -> (N,). Solved in float64 from the normal equations, as the release does."""
    src = src.to(torch.float64)
    dst = dst.to(torch.float64).expand(src.shape)
    a = torch.cat([src, torch.ones_like(src[..., :1])], dim=-1)  # (N, k, 3)
    ata = a.transpose(-1, -2) @ a
    x = torch.linalg.solve(ata, a.transpose(-1, -2) @ dst)  # (N, 3, 2)
    return torch.linalg.norm((a @ x - dst).flatten(-2), dim=-1)


def wls_guidance_scores(lq_landmarks: torch.Tensor, ref_landmarks: torch.Tensor,
                        weights: tuple[float, float] = WLS_WEIGHTS) -> torch.Tensor:
    """Score (lower = better aligned) of each reference: ``lq_landmarks`` (68, 2), ``ref_landmarks`` (N, 68, 2)
    -> (N,) float64."""
    lq = torch.as_tensor(lq_landmarks).detach()
    refs = torch.as_tensor(ref_landmarks).detach().to(lq.device)
    if refs.ndim == 2:
        refs = refs.unsqueeze(0)
    eye, mouth = list(EYE_REGION), list(MOUTH_REGION)
    return (weights[0] * affine_residual(refs[:, eye], lq[eye])
            + weights[1] * affine_residual(refs[:, mouth], lq[mouth]))


def select_guidance(lq_landmarks: torch.Tensor, ref_landmarks: torch.Tensor,
                    weights: tuple[float, float] = WLS_WEIGHTS) -> int:
    """Index of the best-aligned reference (lowest :func:`wls_guidance_scores`; the first on ties)."""
    return int(torch.argmin(wls_guidance_scores(lq_landmarks, ref_landmarks, weights)).item())


def select_references(refs: Sequence[torch.Tensor], landmarks: torch.Tensor | None,
                      ref_landmarks: Sequence[torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor | None, list[int]]:
    """One guidance image per sample: by :func:`select_guidance` when both landmark sets are given, else the
    first reference. Returns (B, 3, H, W), its landmarks (B, 68, 2) or None, and the chosen indices."""
    idx = []
    for i, r in enumerate(refs):
        if landmarks is not None and ref_landmarks is not None and r.shape[0] > 1:
            idx.append(select_guidance(landmarks[i], ref_landmarks[i]))
        else:
            idx.append(0)
    guide = torch.stack([r[j] for r, j in zip(refs, idx)])
    guide_lm = None
    if ref_landmarks is not None:
        guide_lm = torch.stack([rl[j] for rl, j in zip(ref_landmarks, idx)]).to(guide.device)
    return guide, guide_lm, idx


# ------------------------------------------------------------------------------------------- MLS warping
def mls_affine_inverse_grid(src: torch.Tensor, dst: torch.Tensor, size_hw: tuple[int, int], *, alpha: float = 1.0,
                            weights_from: str = "source", clamp: str = "authors", eps: float = 1e-8) -> torch.Tensor:
    """For every pixel v of an H x W output frame, the source position that MLS-affine maps onto it.

    ``src``, ``dst``: (B, N, 2) or (N, 2) control points (x, y): ``src`` in the image to be warped (the reference),
    ``dst`` where they should land (the LQ). Returns (B, H, W, 2) source pixel coordinates (x, y), float32.
    ``weights_from``: "source" (the authors' formulation) or "target" (exact interpolating inverse);
    ``clamp``: "authors" (release border rule) or "none"."""
    if weights_from not in ("source", "target"):
        raise ValueError("weights_from must be 'source' or 'target'")
    if clamp not in ("authors", "none"):
        raise ValueError("clamp must be 'authors' or 'none'")
    squeeze = src.ndim == 2
    p = (src.unsqueeze(0) if squeeze else src).to(torch.float64)
    q = (dst.unsqueeze(0) if squeeze else dst).to(torch.float64).to(p.device)
    h, w = size_hw
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64, device=p.device),
                            torch.arange(w, dtype=torch.float64, device=p.device), indexing="ij")
    v = torch.stack([xs, ys], dim=-1).reshape(1, h * w, 1, 2)  # (1, HW, 1, 2)
    anchor = p if weights_from == "source" else q
    wts = 1.0 / ((anchor.unsqueeze(1) - v).pow(2).sum(-1) + eps).pow(alpha)  # (B, HW, N)
    wsum = wts.sum(-1, keepdim=True)
    pstar = torch.einsum("bkn,bnc->bkc", wts, p) / wsum  # (B, HW, 2)
    qstar = torch.einsum("bkn,bnc->bkc", wts, q) / wsum
    phat = p.unsqueeze(1) - pstar.unsqueeze(2)  # (B, HW, N, 2)
    qhat = q.unsqueeze(1) - qstar.unsqueeze(2)
    if weights_from == "source":  # (v - q*) (P^T W Q)^-1 (P^T W P) + p*
        left = torch.einsum("bkn,bkna,bknc->bkac", wts, phat, qhat)
        right = torch.einsum("bkn,bkna,bknc->bkac", wts, phat, phat)
    else:  # (v - q*) (Q^T W Q)^-1 (Q^T W P) + p*
        left = torch.einsum("bkn,bkna,bknc->bkac", wts, qhat, qhat)
        right = torch.einsum("bkn,bkna,bknc->bkac", wts, qhat, phat)
    a, b_, c, d = left[..., 0, 0], left[..., 0, 1], left[..., 1, 0], left[..., 1, 1]
    det = a * d - b_ * c
    singular = det.abs() < 1e-8
    safe = torch.where(singular, torch.ones_like(det), det)
    inv = torch.stack([torch.stack([d, -b_], -1), torch.stack([-c, a], -1)], -2) / safe[..., None, None]
    vq = (v.squeeze(2) - qstar).unsqueeze(-2)  # (B, HW, 1, 2) row vectors
    out = (vq @ inv @ right).squeeze(-2) + pstar
    # degenerate local fit: fall back to the translation of the weighted centroids
    out = torch.where(singular[..., None], v.squeeze(2) - qstar + pstar, out)
    out = out.reshape(-1, h, w, 2)
    if clamp == "authors":
        out = torch.where(out < 0, torch.zeros_like(out), out)
        x, y = out[..., 0], out[..., 1]
        x = torch.where(x > w - 1, torch.zeros_like(x), x)
        y = torch.where(y > h - 1, torch.zeros_like(y), y)
        out = torch.stack([x, y], dim=-1)
    out = out.to(torch.float32)
    return out[0] if squeeze else out


def grid_for_sampling(coords: torch.Tensor, size_hw: tuple[int, int], convention: str = "authors") -> torch.Tensor:
    """Pixel coordinates (..., H, W, 2) -> grid_sample coordinates (``align_corners=False``).

    "authors": ``(g - S/2) / (S/2)`` as the release normalises (a half-pixel shift against pixel centres);
    "centers": exact pixel centres, ``(2 g + 1) / S - 1``."""
    h, w = size_hw
    scale = torch.tensor([w / 2.0, h / 2.0], dtype=coords.dtype, device=coords.device)
    if convention == "authors":
        return (coords - scale) / scale
    if convention == "centers":
        return (coords + 0.5) / scale - 1
    raise ValueError("convention must be 'authors' or 'centers'")


def mls_warp(feature: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, *, alpha: float = 1.0,
             weights_from: str = "source", clamp: str = "authors", convention: str = "authors") -> torch.Tensor:
    """Warp ``feature`` (B, C, H, W) so that its control points ``src`` (B, N, 2) land on ``dst`` (B, N, 2)
    (pixels of the feature map). Bilinear ``grid_sample`` with zero padding and ``align_corners=False``."""
    h, w = feature.shape[-2:]
    coords = mls_affine_inverse_grid(src, dst, (h, w), alpha=alpha, weights_from=weights_from, clamp=clamp)
    grid = grid_for_sampling(coords, (h, w), convention).to(feature.dtype)
    return F.grid_sample(feature, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# ------------------------------------------------------------------------------------------- landmark mask
def landmark_point_mask(landmarks: torch.Tensor, size: int, *, half: int = 3, first: int = 17) -> torch.Tensor:
    """(B, 1, S, S) float mask with a small square at each landmark ``first``..67 (ASFFNet's "landmark mask").

    As released at 512: for a point (x, y) with 1 < x < S-2 and 1 < y < S-2, the rows floor(y)-half .. ceil(y)+half
    (exclusive) and the same columns are set to 1 (7x7 squares for half=3, 6x6 on integer coordinates). Starts
    below 0 are clipped to 0 (the release's numpy slicing would wrap them; only possible within 2 px of the top or
    left border)."""
    lm = torch.as_tensor(landmarks).detach().to("cpu", torch.float64).numpy()
    if lm.ndim == 2:
        lm = lm[None]
    mask = np.zeros((lm.shape[0], 1, size, size), dtype=np.float32)
    for b in range(lm.shape[0]):
        for x, y in lm[b, first:]:
            if 1 < x < size - 2 and 1 < y < size - 2:
                y0, y1 = max(math.floor(y) - half, 0), math.ceil(y) + half
                x0, x1 = max(math.floor(x) - half, 0), math.ceil(x) + half
                mask[b, 0, y0:y1, x0:x1] = 1.0
    device = landmarks.device if isinstance(landmarks, torch.Tensor) else None
    return torch.from_numpy(mask).to(device)
