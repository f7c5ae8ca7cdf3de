"""One image, one seed: :func:`degrade_image` and the per-item seed derivation :func:`item_seed`.

Test sets and training both go through :func:`degrade_image`, so an LQ image depends only on (HQ pixels, preset,
seed) — never on the order images are processed in, on how many workers there are, or on a global RNG.
"""

from __future__ import annotations

import hashlib

import numpy as np

from degradations.presets import Preset, get_preset
from degradations.sampling import apply_params_with_info, sample_params

#: How per-item seeds are derived (recorded in testset.json).
SEED_SCHEME = "int.from_bytes(sha256(f'celebref-degrade:{global_seed}:{item_id}')[:8], 'big') >> 1"


def item_seed(global_seed: int, item_id: str) -> int:
    """A 63-bit seed for one item: the first 8 bytes of sha256("celebref-degrade:<global_seed>:<item_id>"),
    shifted right by one bit (fits int64). Independent of order, subsets and worker count."""
    if isinstance(global_seed, bool) or not isinstance(global_seed, (int, np.integer)):
        raise TypeError(f"global_seed must be an int, got {global_seed!r}")
    digest = hashlib.sha256(f"celebref-degrade:{int(global_seed)}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def degrade_image(hq: np.ndarray, preset: Preset | str, seed: int) -> tuple[np.ndarray, dict]:
    """Degrade ``hq`` (uint8 (H, W, 3) RGB) with parameters drawn from ``preset`` by ``default_rng(seed)``.

    Returns ``(lq, params)``: ``lq`` uint8 of the input's size; ``params`` as from
    :func:`~degradations.sampling.sample_params`, plus ``lq_height``/``lq_width`` (the smallest size the image
    passed through)."""
    preset = get_preset(preset) if not isinstance(preset, Preset) else preset
    rng = np.random.default_rng(int(seed))
    params = sample_params(preset, rng)
    lq, info = apply_params_with_info(hq, params)
    params.update(info)
    return lq, params
