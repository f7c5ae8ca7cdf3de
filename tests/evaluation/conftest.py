"""Fixtures for the metric tests: the oracle inputs in ../shared/data/oracles (skipped with a reason when absent)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from bfrcore.imageio import read_image

CALIBRATION_NAMES = ("I03", "I04", "I06", "I08", "I19")


@pytest.fixture(scope="session")
def oracles(shared_data) -> Path:
    root = shared_data / "oracles"
    if not root.is_dir():
        pytest.skip(f"{root} missing (metric oracle inputs, see ../shared/data/README.md)")
    return root


@pytest.fixture(scope="session")
def calibration(oracles):
    """The 5 pyiqa calibration pairs as uint8 (5, 3, 384, 512) tensors (dist, ref) and the two oracle tables."""
    root = oracles / "pyiqa_calibration"
    if not (root / "ref_dir").is_dir():
        pytest.skip(f"{root} missing")
    dist = np.stack([read_image(root / "dist_dir" / f"{n}.bmp") for n in CALIBRATION_NAMES])
    ref = np.stack([read_image(root / "ref_dir" / f"{n}.bmp") for n in CALIBRATION_NAMES])
    to_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return {"dist": to_t(dist), "ref": to_t(ref), "official": _read_table(root / "results_official.csv"),
            "pyiqa": _read_table(root / "calibration_summary.csv")}


def _read_table(path: Path) -> dict[str, list[float]]:
    """{metric: [I03, I04, I06, I08, I19]} from pyiqa's ResultsCalibra csv files (first column = metric name)."""
    out = {}
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    for row in rows[1:]:
        if not row:
            continue
        name = row[0].strip()
        try:
            out[name] = [float(v) for v in row[1:6]]
        except ValueError:
            continue
    return out


@pytest.fixture(scope="session")
def baboon(oracles) -> np.ndarray:
    p = oracles / "basicsr" / "baboon.png"
    if not p.is_file():
        pytest.skip(f"{p} missing")
    return read_image(p)


@pytest.fixture(scope="session")
def niqe_params():
    from bfrcore import weights as wreg

    st = wreg.status("niqe-basicsr")
    if st.path is None:
        pytest.skip("BasicSR NIQE parameters are not in the weights cache; `make test` fetches them "
                    "(`bench weights fetch niqe-basicsr`)")
    from bfrcore.metrics.niqe import load_pristine_params

    return load_pristine_params(str(st.path))


@pytest.fixture(scope="session")
def face_pairs(celebref_examples):
    """Real 512 CelebRef-HQ faces and degraded versions (blur + noise + JPEG, made with OpenCV, seeded)."""
    import cv2

    files = sorted((celebref_examples / "RefsImg").glob("*/*.png"))[:6]
    rng = np.random.default_rng(0)
    hq, lq = [], []
    for f in files:
        img = read_image(f)
        x = cv2.GaussianBlur(img, (0, 0), 2.0).astype(np.float64)
        x = np.clip(x + rng.normal(0, 6, x.shape), 0, 255).astype(np.uint8)
        ok, enc = cv2.imencode(".jpg", x[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 40])
        x = cv2.imdecode(enc, cv2.IMREAD_COLOR)[:, :, ::-1]
        hq.append(img)
        lq.append(np.ascontiguousarray(x))
    return np.stack(hq), np.stack(lq)


@pytest.fixture(autouse=True, scope="module")
def _single_torch_thread():
    """One intra-op thread for these tests: on the 2 shared cores of CI, 2 OpenMP threads make convolutions
    2-3x slower (measured), and the results do not depend on it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
