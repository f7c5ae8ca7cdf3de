"""The DATASET folder format (written by `celebref build`, read by everything downstream).

Layout::

    <root>/images/<identity>/<n>.png   kept faces, FFHQ-aligned, size x size RGB (lossless)
    <root>/manifest.parquet            one row per candidate face, kept or rejected (columns: MANIFEST_COLUMNS + more)
    <root>/identities.parquet          one row per kept identity: identity, name, n_images, split
    <root>/references.parquet          image_id -> ref_image_id (rank 0..): same person, never itself
    <root>/build.json                  parameters, versions, weights hashes, counts per stage, dataset_hash

Ids: ``identity`` is a file-name-safe string (CelebRef-HQ style 5-digit ids such as ``00075``); a kept face has
``image_id = f"{identity}_{n}"`` and lives at ``images/<identity>/<n>.png``. Landmarks are 68 (x, y) points in the
aligned image's pixel coordinates, stored flat (136 floats, x0, y0, x1, y1, ...).

The contract (columns, types, value rules, build.json keys) is :mod:`bfrcore.formats.dataset`:
:func:`write_dataset` validates everything before writing the first file, :meth:`FaceDataset.load` validates
every file (:class:`bfrcore.formats.FormatError` naming the file and the field).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from bfrcore.formats import FormatError, parquet_schema
from bfrcore.formats import dataset as fmt
from bfrcore.imageio import read_image, write_bytes_atomic
from bfrcore.safepath import safe_component, safe_join

FORMAT_VERSION = fmt.FORMAT

#: Columns every manifest has (the builder adds stage-specific columns such as quality scores); the types and
#: value rules are in :mod:`bfrcore.formats.dataset`.
MANIFEST_COLUMNS = {c.name: c.doc for c in fmt.MANIFEST}
SPLITS = fmt.SPLITS
#: The dataset's files and their validators (read and written in this order).
_TABLES = (("manifest.parquet", fmt.validate_manifest), ("identities.parquet", fmt.validate_identities),
           ("references.parquet", fmt.validate_references))


def image_id_for(identity: str, n: int) -> str:
    return f"{safe_component(identity, 'identity')}_{int(n)}"


def relpath_for(identity: str, n: int) -> str:
    return f"images/{safe_component(identity, 'identity')}/{int(n)}.png"


def landmarks_to_list(pts: np.ndarray | None) -> list[float] | None:
    if pts is None:
        return None
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    if pts.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks, got {pts.shape}")
    return [float(v) for v in pts.reshape(-1)]


def landmarks_from_value(v) -> np.ndarray | None:
    """Manifest cell -> (68, 2) float32 array, or None."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    arr = np.asarray(v, dtype=np.float32)
    if arr.size != 136:
        return None
    return arr.reshape(68, 2)


def dataset_hash(image_ids: Iterable[str], sha256s: Iterable[str]) -> str:
    """Content hash of a dataset: sha256 over sorted 'image_id sha256' lines of the kept images."""
    h = hashlib.sha256()
    for iid, sha in sorted(zip(image_ids, sha256s)):
        h.update(f"{iid} {sha}\n".encode())
    return h.hexdigest()


@dataclass
class FaceDataset:
    """A dataset folder, loaded. Kept images are in :attr:`images` (indexed by image_id)."""

    root: Path
    manifest: pd.DataFrame
    identities: pd.DataFrame
    references: pd.DataFrame
    info: dict = field(default_factory=dict)

    @classmethod
    def load(cls, root: str | os.PathLike) -> "FaceDataset":
        """Open a dataset folder; every table and build.json is validated (FormatError names file and field)."""
        root = Path(root)
        if not (root / "manifest.parquet").is_file():
            raise FileNotFoundError(f"{root} is not a dataset folder (no manifest.parquet); run `celebref build`")
        tables = []
        for name, validate in _TABLES:  # every file validated against bfrcore.formats.dataset (FormatError)
            path = root / name
            if not path.is_file():
                raise FormatError(path, "(file)", f"a {name} file ({FORMAT_VERSION})", "no such file")
            schema = parquet_schema(path)
            df = pd.read_parquet(path)
            validate(df, path, schema=schema)
            tables.append(df)
        info_path = root / "build.json"
        try:
            info = json.loads(info_path.read_text())
        except FileNotFoundError:
            raise FormatError(info_path, "(file)", f"a build.json file ({FORMAT_VERSION})", "no such file") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError(info_path, "(document)", "a JSON object", f"invalid JSON ({e})") from None
        fmt.validate_build_info(info, info_path)
        return cls(root, *tables, info)

    # ------------------------------------------------------------------ views
    @cached_property
    def images(self) -> pd.DataFrame:
        kept = self.manifest[self.manifest["kept"].astype(bool)].copy()
        kept = kept.set_index("image_id", drop=False).sort_index()
        return kept

    @property
    def image_size(self) -> int:
        return int(self.info.get("params", {}).get("size", 512))

    @cached_property
    def hash(self) -> str:
        imgs = self.images
        return dataset_hash(imgs["image_id"], imgs["sha256"].fillna(""))

    def image_ids(self, split: str | None = None) -> list[str]:
        imgs = self.images
        if split is not None:
            if split not in SPLITS:
                raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
            imgs = imgs[imgs["split"] == split]
        return list(imgs.index)

    def image_path(self, image_id: str) -> Path:
        return safe_join(self.root, str(self.images.at[image_id, "path"]))

    def read(self, image_id: str) -> np.ndarray:
        """RGB uint8 (size, size, 3)."""
        return read_image(self.image_path(image_id))

    def landmarks(self, image_id: str) -> np.ndarray | None:
        """(68, 2) float32 in aligned-image pixels, or None when the build could not place them."""
        if "landmarks" not in self.images.columns:
            return None
        return landmarks_from_value(self.images.at[image_id, "landmarks"])

    def identity_of(self, image_id: str) -> str:
        return str(self.images.at[image_id, "identity"])

    def same_identity(self, image_id: str) -> list[str]:
        """Other kept images of the same person (never ``image_id`` itself), sorted."""
        ident = self.identity_of(image_id)
        imgs = self.images
        return [i for i in imgs.index[imgs["identity"] == ident] if i != image_id]

    @cached_property
    def _refs_by_image(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        if len(self.references):
            r = self.references.sort_values(["image_id", "rank"])
            for iid, grp in r.groupby("image_id", sort=False):
                out[str(iid)] = [str(x) for x in grp["ref_image_id"]]
        return out

    def references_of(self, image_id: str, max_refs: int | None = None) -> list[str]:
        """The reference list of a (test) image from references.parquet; falls back to same_identity()."""
        refs = self._refs_by_image.get(image_id)
        if refs is None:
            refs = self.same_identity(image_id)
        refs = [r for r in refs if r != image_id]
        return refs[:max_refs] if max_refs is not None else refs


def write_dataset(
    root: str | os.PathLike,
    manifest: pd.DataFrame,
    *,
    identities: pd.DataFrame | None = None,
    references: pd.DataFrame | None = None,
    build_info: dict | None = None,
) -> Path:
    """Write the tables and build.json of a dataset whose images are already under ``root/images``.

    Fills ``identities`` from the manifest when not given; adds ``dataset_hash`` and ``format`` to build.json.
    """
    root = Path(root)
    for col in ("face_id", "kept", "image_id", "identity", "path", "sha256", "split"):
        if col not in manifest.columns:
            raise ValueError(f"manifest lacks column {col!r}")
    kept = manifest[manifest["kept"].astype(bool)]
    if kept["image_id"].duplicated().any():
        dup = kept["image_id"][kept["image_id"].duplicated()].tolist()[:5]
        raise ValueError(f"duplicate image_id in manifest: {dup}")
    for p in kept["path"]:
        safe_join(root, str(p))  # refuses escapes
    if identities is None:
        grp = kept.groupby("identity")
        identities = pd.DataFrame({
            "identity": pd.Series(list(grp.groups.keys()), dtype=str),
            "name": pd.Series([None] * grp.ngroups, dtype=object),
            "n_images": pd.Series(grp.size().values, dtype="int64"),
            "split": pd.Series(grp["split"].first().values, dtype=str),
        })
    if references is None:
        references = pd.DataFrame({"image_id": pd.Series(dtype=str), "ref_image_id": pd.Series(dtype=str),
                                   "rank": pd.Series(dtype="int64")})
    info = dict(build_info or {})
    info["format"] = FORMAT_VERSION
    info["dataset_hash"] = dataset_hash(kept["image_id"], kept["sha256"].fillna(""))
    info["counts"] = {**info.get("counts", {}), "kept_images": int(len(kept)),
                      "identities": int(kept["identity"].nunique())}
    text = json.dumps(info, indent=2, sort_keys=True, default=str)
    # everything is validated before the first file is written: a malformed dataset is never left behind
    for (name, validate), df in zip(_TABLES, (manifest, identities, references)):
        validate(df, root / name, writing=True)
    fmt.validate_build_info(json.loads(text), root / "build.json", writing=True)
    root.mkdir(parents=True, exist_ok=True)
    for (name, _), df in zip(_TABLES, (manifest, identities, references)):
        _write_parquet(df, root / name)
    write_bytes_atomic(root / "build.json", text.encode())
    return root


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
