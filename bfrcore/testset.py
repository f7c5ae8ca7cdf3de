"""The TESTSET folder format (written by `bench degrade`, read by `bench evaluate` / `bench score`).

Layout::

    <T>/lq/<image_id>.png      degraded inputs at the dataset's image size (RGB, lossless PNG)
    <T>/params.parquet         one row per generated image: image_id, seed, every sampled parameter,
                               kernel_sha256, lq_sha256 (file), lq_pixel_sha256 (decoded pixels)
    <T>/checksums.sha256       "<sha256>  lq/<image_id>.png" lines, sorted by image_id (`sha256sum -c` compatible)
    <T>/testset.json           format, name, preset (full), preset_name, preset_version, seed, split,
                               dataset {root, root_relative, hash}, n_images, testset_hash, severity,
                               skipped [{image_id, reason}], versions, created

``testset_hash`` is the content hash of the test set: sha256 over ``"dataset <dataset_hash>\\n"`` followed by
the sorted ``"<image_id> <lq_sha256>\\n"`` lines (see :func:`compute_testset_hash`). Two test sets with equal
hashes have byte-identical inputs and the same ground truth.

Read with :meth:`TestSet.load`::

    ts = TestSet.load("testsets/celebref-x8")
    for iid in ts.image_ids:
        lq, gt = ts.read_lq(iid), ts.read_gt(iid)     # uint8 (H, W, 3) RGB each
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bfrcore.errors import InputError
from bfrcore.formats import parquet_schema
from bfrcore.formats.testset import validate_info, validate_params
from bfrcore.imageio import read_image
from bfrcore.safepath import safe_component, safe_join

FORMAT_VERSION = "celebref.testset/1"
LQ_DIR = "lq"
PARAMS_FILE = "params.parquet"
CHECKSUMS_FILE = "checksums.sha256"
INFO_FILE = "testset.json"

#: Columns every params.parquet has (the sampled parameters of the preset follow as further columns).
PARAMS_BASE_COLUMNS = ("image_id", "seed", "kernel_sha256", "lq_sha256", "lq_pixel_sha256")


class TestSetError(InputError):
    """A folder that is not a (complete, consistent) test set, or whose dataset does not match."""

    __test__ = False  # not a pytest class


def lq_relpath(image_id: str) -> str:
    """``lq/<image_id>.png`` (the id is checked to be a safe file-name component)."""
    return f"{LQ_DIR}/{safe_component(image_id, 'image_id')}.png"


def compute_testset_hash(dataset_hash: str, lq_sha256: dict[str, str] | Iterable[tuple[str, str]]) -> str:
    """sha256 over ``"dataset <hash>\\n"`` + sorted ``"<image_id> <lq file sha256>\\n"`` lines."""
    items = lq_sha256.items() if isinstance(lq_sha256, dict) else lq_sha256
    h = hashlib.sha256(f"dataset {dataset_hash}\n".encode())
    for iid, sha in sorted(items):
        h.update(f"{iid} {sha}\n".encode())
    return h.hexdigest()


def format_checksums(lq_sha256: dict[str, str]) -> str:
    """The checksums.sha256 text: ``<sha256>  lq/<image_id>.png`` sorted by image id."""
    return "".join(f"{lq_sha256[i]}  {lq_relpath(i)}\n" for i in sorted(lq_sha256))


def parse_checksums(text: str) -> dict[str, str]:
    """checksums.sha256 text -> {image_id: sha256}. Raises TestSetError on a malformed line."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise TestSetError(f"{CHECKSUMS_FILE} line {n} is malformed: {line!r}")
        rel = parts[1].lstrip("*").strip()
        if not (rel.startswith(f"{LQ_DIR}/") and rel.endswith(".png")):
            raise TestSetError(f"{CHECKSUMS_FILE} line {n} names {rel!r}, not lq/<image_id>.png")
        out[rel[len(LQ_DIR) + 1:-4]] = parts[0].lower()
    return out


@dataclass
class TestSet:
    """A test-set folder, loaded. GT images come from :attr:`dataset` (checked against the recorded hash)."""

    __test__ = False  # not a pytest class

    root: Path
    info: dict
    params: pd.DataFrame
    dataset_root: Path | None = None
    check_dataset: bool = True
    _dataset: object = field(default=None, repr=False)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, root: str | os.PathLike, *, dataset_root: str | os.PathLike | None = None,
             check_dataset: bool = True) -> TestSet:
        """Open a test set. ``dataset_root`` overrides where the GT dataset is looked for (default: the recorded
        absolute root, then the recorded path relative to the test set). The dataset is opened lazily on first
        use of :attr:`dataset`; its hash must equal the recorded one unless ``check_dataset=False``."""
        root = Path(root)
        info_path = root / INFO_FILE
        if not info_path.is_file():
            raise TestSetError(f"{root} is not a test set (no {INFO_FILE}); create one with `bench degrade`")
        try:
            info = json.loads(info_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise TestSetError(f"{info_path} is not valid JSON: {e}") from e
        n_images = validate_info(info, info_path).n_images  # bfrcore.formats.testset: FormatError
        if not (root / PARAMS_FILE).is_file():
            raise TestSetError(f"{root} lacks {PARAMS_FILE} (incomplete test set; rerun `bench degrade`)")
        params = pd.read_parquet(root / PARAMS_FILE)
        validate_params(params, root / PARAMS_FILE, schema=parquet_schema(root / PARAMS_FILE), n_images=n_images)
        params = params.set_index("image_id", drop=False).sort_index()
        return cls(root=root, info=info, params=params,
                   dataset_root=Path(dataset_root) if dataset_root is not None else None,
                   check_dataset=check_dataset)

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        return str(self.info["name"])

    @property
    def hash(self) -> str:
        """The test set's content hash (``testset_hash`` in testset.json)."""
        return str(self.info["testset_hash"])

    @property
    def preset_name(self) -> str:
        return str(self.info.get("preset_name", ""))

    @property
    def preset_version(self) -> str:
        return str(self.info.get("preset_version", ""))

    @property
    def severity(self) -> float | None:
        s = self.info.get("severity")
        return None if s is None else float(s)

    @property
    def seed(self) -> int:
        return int(self.info["seed"])

    @property
    def dataset_hash(self) -> str:
        return str(self.info["dataset"]["hash"])

    @property
    def skipped(self) -> list[dict]:
        """[{image_id, reason}] for source images that could not be degraded."""
        return list(self.info.get("skipped", []))

    # ------------------------------------------------------------------ images
    @property
    def image_ids(self) -> list[str]:
        """Ids of the generated LQ images, sorted."""
        return list(self.params.index)

    def __len__(self) -> int:
        return len(self.params)

    def _check_id(self, image_id: str) -> None:
        if image_id not in self.params.index:
            raise KeyError(f"image {image_id!r} is not in test set {self.name!r}")

    def lq_path(self, image_id: str) -> Path:
        self._check_id(image_id)
        return safe_join(self.root, lq_relpath(image_id))

    def read_lq(self, image_id: str) -> np.ndarray:
        """The degraded input, RGB uint8 (H, W, 3)."""
        return read_image(self.lq_path(image_id))

    def read_gt(self, image_id: str) -> np.ndarray:
        """The ground truth (the dataset image), RGB uint8 (H, W, 3)."""
        self._check_id(image_id)
        return self.dataset.read(image_id)

    def params_of(self, image_id: str) -> dict:
        """The recorded parameters of one image (plain values)."""
        self._check_id(image_id)
        row = self.params.loc[image_id]
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}

    # ------------------------------------------------------------------ dataset
    def _dataset_candidates(self) -> list[Path]:
        if self.dataset_root is not None:
            return [self.dataset_root]
        d = self.info.get("dataset", {})
        cands = []
        if d.get("root"):
            cands.append(Path(d["root"]))
        if d.get("root_relative"):
            cands.append(self.root / d["root_relative"])
        return cands

    @property
    def dataset(self):
        """The GT dataset (:class:`bfrcore.dataset.FaceDataset`); its hash is checked against testset.json."""
        if self._dataset is None:
            from bfrcore.dataset import FaceDataset

            cands = self._dataset_candidates()
            found = next((c for c in cands if (c / "manifest.parquet").is_file()), None)
            if found is None:
                raise TestSetError(
                    f"the dataset of test set {self.name!r} was not found (looked in "
                    f"{', '.join(str(c) for c in cands) or 'nowhere: none recorded'}); pass dataset_root=")
            ds = FaceDataset.load(found)
            if self.check_dataset and ds.hash != self.dataset_hash:
                raise TestSetError(
                    f"dataset at {found} has hash {ds.hash[:12]}…, but test set {self.name!r} was made from "
                    f"{self.dataset_hash[:12]}…; use the dataset it was generated from")
            self._dataset = ds
        return self._dataset

    # ------------------------------------------------------------------ checksums
    def checksums(self) -> dict[str, str]:
        """{image_id: sha256 of lq/<image_id>.png} from checksums.sha256."""
        path = self.root / CHECKSUMS_FILE
        if not path.is_file():
            raise TestSetError(f"{self.root} lacks {CHECKSUMS_FILE}")
        return parse_checksums(path.read_text())
