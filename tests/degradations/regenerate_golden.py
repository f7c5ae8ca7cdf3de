"""Regenerate tests/degradations/golden_lq.npz: the LQ output of every built-in preset for a fixed synthetic input
and seed. Run only when a change to the degradations is intended (and bump
degradations.sampling.IMPLEMENTATION_VERSION); explain the change in the commit.

    .venv/bin/python -m tests.degradations.regenerate_golden
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).with_name("golden_lq.npz")
SEED = 20240607


def golden_input() -> np.ndarray:
    from tests.helpers import tiny_image

    img = tiny_image(48, 48, seed=4).astype(np.int64)
    img[..., 1] = (img[..., 1] + np.arange(48)[None, :] * 5) % 256  # some texture
    return img.astype(np.uint8)


def compute() -> dict[str, np.ndarray]:
    from degradations.pipeline import degrade_image
    from degradations.presets import list_presets

    hq = golden_input()
    return {name: degrade_image(hq, name, SEED)[0] for name in list_presets()}


def main() -> None:
    from degradations.sampling import IMPLEMENTATION_VERSION

    out = compute()
    np.savez_compressed(GOLDEN, implementation=np.array(IMPLEMENTATION_VERSION), **out)
    print(f"wrote {GOLDEN} ({len(out)} presets, implementation {IMPLEMENTATION_VERSION})")


if __name__ == "__main__":
    main()
