"""Helpers for tests: where the shared real photos are, tiny deterministic images, a mini dataset."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_HINT = "../shared/data next to the project root (or CELEBREF_SHARED_DATA)"
CELEBREF_EXAMPLES = "dmdnet_celebrefhq/TestExamples/TestSpecificRestoration"
MINI_TEST_IDENTITIES = ("00075", "00146")


def shared_data_root() -> Path | None:
    env = os.environ.get("CELEBREF_SHARED_DATA")
    cands = [Path(env)] if env else []
    cands += [PROJECT_ROOT.parent / "shared" / "data"]
    for c in cands:
        if (c / "faces").is_dir():
            return c
    return None


def tiny_image(h: int = 32, w: int = 48, seed: int = 0) -> np.ndarray:
    """A deterministic smooth RGB uint8 test pattern (gradients + one disc), not noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * xx / max(w - 1, 1)
    g = 255 * yy / max(h - 1, 1)
    b = 255.0 * (((xx - w / 2) ** 2 + (yy - h / 2) ** 2) < (min(h, w) / 3) ** 2)
    img = np.stack([r, g, b], axis=2)
    if seed:
        img = np.roll(img, seed, axis=1)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def read_landmark_txt(path: Path) -> np.ndarray:
    """68 'x y' lines (the authors' RefsLandmark format) -> (68, 2) float32."""
    pts = np.loadtxt(path, dtype=np.float32)
    assert pts.shape == (68, 2), (path, pts.shape)
    return pts


def make_mini_dataset(examples_root: Path, out: Path, test_identities=MINI_TEST_IDENTITIES) -> Path:
    """Write a bfrcore.dataset folder from RefsImg/<id>/<n>.png + RefsLandmark/<id>/<n>.png.txt (copies the
    images into ``out``, a temporary folder; nothing is copied into the repository)."""
    from bfrcore.dataset import image_id_for, landmarks_to_list, relpath_for, write_dataset
    from bfrcore.imageio import file_sha256, read_image, write_png

    rows = []
    for ident_dir in sorted((examples_root / "RefsImg").iterdir()):
        ident = ident_dir.name
        for f in sorted(ident_dir.glob("*.png"), key=lambda p: int(p.stem)):
            n = int(f.stem)
            rel = relpath_for(ident, n)
            write_png(out / rel, read_image(f))
            lm_file = examples_root / "RefsLandmark" / ident / f"{f.name}.txt"
            rows.append({
                "face_id": f"{ident}-{n}",
                "kept": True,
                "reject_stage": None,
                "reject_reason": None,
                "identity": ident,
                "image_id": image_id_for(ident, n),
                "path": rel,
                "sha256": file_sha256(out / rel),
                "split": "test" if ident in test_identities else "train",
                "landmarks": landmarks_to_list(read_landmark_txt(lm_file)) if lm_file.is_file() else None,
                "source_path": str(f.relative_to(examples_root.parent.parent.parent)),
                "source_sha256": file_sha256(f),
            })
    manifest = pd.DataFrame(rows)
    refs = []
    for _, r in manifest[manifest["split"] == "test"].iterrows():
        others = manifest[(manifest["identity"] == r["identity"]) & (manifest["image_id"] != r["image_id"])]
        for rank, rid in enumerate(sorted(others["image_id"])):
            refs.append({"image_id": r["image_id"], "ref_image_id": rid, "rank": rank})
    write_dataset(out, manifest, references=pd.DataFrame(refs),
                  build_info={"params": {"size": 512}, "source": "CelebRef-HQ examples (tests)"})
    return out
