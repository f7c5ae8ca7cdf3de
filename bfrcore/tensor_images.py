"""RGB uint8 images <-> float tensors in [0, 1], and the one resize every command uses between image sizes.

``resize_uint8`` is how `bench evaluate`, `bench score`, `bench restore` and the training data bring an image to
another square size (bicubic, antialiased when shrinking, rounded back to uint8), so a model trains on inputs
made the way it is tested and used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def to_tensor(imgs: Sequence[np.ndarray], device: str | torch.device = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 images -> (N, 3, H, W) float32 in [0, 1] on ``device``."""
    arr = np.stack([np.ascontiguousarray(i) for i in imgs])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).to(device=device, dtype=torch.float32) / 255.0


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8 (clamped, rounded)."""
    return (t.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def resize_uint8(img: np.ndarray, size: int) -> np.ndarray:
    """Square bicubic resize of an RGB uint8 image to (size, size) (antialiased when shrinking), rounded back to
    uint8; the image itself when it already has that size."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    t = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255.0
    t = F.interpolate(t, size=(size, size), mode="bicubic", align_corners=False,
                      antialias=size < max(img.shape[:2]))
    return to_uint8(t[0])
