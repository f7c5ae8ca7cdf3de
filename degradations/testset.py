"""Generate, resume and verify TESTSET folders (format: :mod:`bfrcore.testset`).

Each image is degraded with ``degrade_image(hq, preset, item_seed(seed, image_id))``, so its bytes depend only on
(HQ pixels, preset, seed, image id): any subset, order or ``workers`` count gives identical files.

While running, one JSON line per finished image goes to ``<T>/.partial/records.jsonl`` (with the run's settings in
``.partial/config.json``); an interrupted run resumes by skipping images whose record exists and whose PNG still has
the recorded sha256. The final tables (params.parquet, checksums.sha256, testset.json) are written at the end,
atomically, and ``.partial`` is removed.

Interruptions (even ``kill -9``): a worker writes its PNG to a temporary name in ``lq/``, fsyncs and renames it; the
parent appends the record only after the worker reported success, so a record always names a complete file. An
image whose PNG has no record, or a record whose PNG hash differs, is made again; leftover temporary files and a
record line cut short are removed on resume. Workers exit with the parent (:mod:`bfrcore.procutil`), so no
orphan keeps writing after the parent died.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import logging
import multiprocessing
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from bfrcore.dataset import FaceDataset
from bfrcore.formats.testset import validate_info, validate_params
from bfrcore.imageio import (
    ImageReadError,
    encode_png,
    file_sha256,
    pixel_sha256,
    read_image,
    sha256_bytes,
    write_bytes_atomic,
)
from bfrcore.procutil import init_worker
from bfrcore.safepath import safe_component, safe_join
from bfrcore.testset import (
    CHECKSUMS_FILE,
    FORMAT_VERSION,
    INFO_FILE,
    LQ_DIR,
    PARAMS_FILE,
    TestSet,
    TestSetError,
    compute_testset_hash,
    format_checksums,
    lq_relpath,
)
from bfrcore.versions import suite_version
from degradations.pipeline import SEED_SCHEME, degrade_image, item_seed
from degradations.presets import Preset, get_preset
from degradations.sampling import IMPLEMENTATION_VERSION, param_dtype, params_to_record

log = logging.getLogger("celebref.degrade")

PARTIAL_DIR = ".partial"
RECORDS_FILE = "records.jsonl"
CONFIG_FILE = "config.json"
#: zlib level of the LQ PNGs: 5x faster than 6 on blurry 512x512 faces for ~25% larger files (lossless either way).
PNG_COMPRESS_LEVEL = 1
JPEG_ROUNDING = "quality = floor(u), u ~ U(lo, hi) (grid presets: u on the grid)"


class TestSetConfigError(TestSetError):
    """The output folder holds a test set made with other settings."""

    __test__ = False


@dataclass
class GenerateResult:
    root: Path
    n_images: int
    generated: int
    reused: int
    skipped: list[dict] = field(default_factory=list)
    testset_hash: str = ""


# ----------------------------------------------------------------------------------------------- one image
@lru_cache(maxsize=8)
def _preset_from_json(preset_json: str) -> Preset:
    return get_preset(json.loads(preset_json))


def _degrade_one(task: tuple) -> dict:
    """Worker: read, degrade, write one image. Returns a record (ok) or {"image_id", "error"} (skip)."""
    image_id, src_path, preset_json, global_seed, out_root, write = task
    try:
        hq = read_image(src_path)
    except ImageReadError as e:
        return {"image_id": image_id, "error": f"unreadable: {e.reason}"}
    except OSError as e:
        return {"image_id": image_id, "error": f"unreadable: {type(e).__name__}: {e}"}
    seed = item_seed(global_seed, image_id)
    try:
        lq, params = degrade_image(hq, _preset_from_json(preset_json), seed)
    except Exception as e:  # noqa: BLE001 - recorded as a skip, never a crash halfway
        return {"image_id": image_id, "error": f"degrade_failed: {type(e).__name__}: {e}"}
    png = encode_png(lq, PNG_COMPRESS_LEVEL)
    if write:
        _write_durable(safe_join(out_root, lq_relpath(image_id)), png)
    rec = {"image_id": image_id, "seed": seed, **params_to_record(params)}
    rec["lq_sha256"] = sha256_bytes(png)
    rec["lq_pixel_sha256"] = pixel_sha256(lq)
    return rec


def _run_tasks(tasks: list[tuple], workers: int, on_result: Callable[[dict], None]) -> None:
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            on_result(_degrade_one(t))
        return
    ctx = multiprocessing.get_context("spawn")  # no forked copies of torch/OpenMP/OpenCV thread pools
    # The workers exit with this process, even on kill -9 (guarded before they import anything heavy). They are
    # spawned by this thread, which outlives the pool, so PR_SET_PDEATHSIG is safe.
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker,
                                initargs=(os.getpid(), f"{__name__}:_worker_init")) as pool:
        chunk = max(1, min(16, len(tasks) // (workers * 4)))
        for rec in pool.map(_degrade_one, tasks, chunksize=chunk):
            on_result(rec)


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already


#: prefix of the temporary files LQ PNGs are written to before their rename (in the same ``lq/`` folder)
_TMP_PREFIX = "."
_TMP_SUFFIX = ".tmp"


def _write_durable(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all-or-nothing: a temporary name in the same folder, fsync, rename. After a crash
    the path holds either the old file, no file, or all of ``data`` (a stray ``.<name>.*.tmp`` may remain)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{path.name}.", suffix=_TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _clean_interrupted(out: Path) -> int:
    """Remove temporary LQ files left by an interrupted run (only ours: ``lq/.<id>.png.*.tmp``). Returns how many."""
    n = 0
    lq_dir = out / LQ_DIR
    if lq_dir.is_dir():
        for f in lq_dir.glob(f"{_TMP_PREFIX}*.png.*{_TMP_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
                n += 1
    return n


def _open_records(path: Path):
    """The records file, opened for appending, with a last line cut by an interruption removed first (else the
    next record would be glued to it and both lost)."""
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
    return open(path, "a")


# ----------------------------------------------------------------------------------------------- helpers
def _versions() -> dict:
    import cv2
    import PIL
    import scipy

    return {"celebref-suite": suite_version(missing="unknown"), "degradations": IMPLEMENTATION_VERSION,
            "numpy": np.__version__, "opencv": cv2.__version__, "scipy": scipy.__version__, "pillow": PIL.__version__,
            "pandas": pd.__version__, "python": platform.python_version()}


def _config(preset: Preset, seed: int, dataset: FaceDataset, split: str | None) -> dict:
    return {"preset": preset.to_dict(), "seed": int(seed), "dataset_hash": dataset.hash, "split": split,
            "implementation": IMPLEMENTATION_VERSION}


def _read_records(path: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the interruption
        if isinstance(rec, dict) and "image_id" in rec and "lq_sha256" in rec:
            out[rec["image_id"]] = rec
    return out


def _existing_records(out: Path, config: dict) -> dict[str, dict]:
    """Records of a previous (complete or interrupted) run with the same settings; raises if settings differ."""
    recs: dict[str, dict] = {}
    info_path = out / INFO_FILE
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text())
        except json.JSONDecodeError:
            info = {}
        prev = {"preset": info.get("preset"), "seed": info.get("seed"),
                "dataset_hash": info.get("dataset", {}).get("hash"), "split": info.get("split"),
                "implementation": info.get("versions", {}).get("degradations")}
        if prev != config:
            raise TestSetConfigError(
                f"{out} already holds a test set made with other settings (preset "
                f"{info.get('preset_name')}@{info.get('preset_version')}, seed {info.get('seed')}); "
                f"choose another --out or delete it")
        if (out / PARAMS_FILE).is_file():
            df = pd.read_parquet(out / PARAMS_FILE)
            for row in df.to_dict("records"):
                recs[row["image_id"]] = {k: _plain(v) for k, v in row.items()}
    cfg_path = out / PARTIAL_DIR / CONFIG_FILE
    if cfg_path.is_file():
        if json.loads(cfg_path.read_text()) != config:
            raise TestSetConfigError(f"{out} holds an interrupted run with other settings; choose another --out "
                                     f"or delete {out / PARTIAL_DIR}")
        recs.update(_read_records(out / PARTIAL_DIR / RECORDS_FILE))
    return recs


def _plain(v):
    if v is pd.NA or v is None:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and np.isnan(v):
        return None
    return v


def records_table(records: list[dict]) -> pd.DataFrame:
    """Records -> DataFrame with one nullable dtype per parameter (:func:`degradations.sampling.param_dtype`), so
    63-bit seeds never become float64 and an all-None column keeps its type."""
    keys: dict[str, None] = {}
    for r in records:
        keys.update(dict.fromkeys(r))
    return pd.DataFrame({k: pd.array([r.get(k) for r in records], dtype=param_dtype(k)) for k in keys})


def select_ids(all_ids: Sequence[str], ids: Iterable[str] | None = None, limit: int | None = None) -> list[str]:
    """``ids`` (must exist) or all ids, sorted; then the first ``limit``."""
    if ids is not None:
        wanted = list(dict.fromkeys(ids))
        known = set(all_ids)
        missing = [i for i in wanted if i not in known]
        if missing:
            raise TestSetError(f"{len(missing)} requested id(s) are not in the dataset split: {missing[:5]}")
        chosen = sorted(wanted)
    else:
        chosen = sorted(all_ids)
    if limit is not None:
        if limit < 1:
            raise TestSetError(f"--limit must be >= 1, got {limit}")
        chosen = chosen[:limit]
    return chosen


def default_name(out: Path, preset: Preset, seed: int) -> str:
    try:
        return safe_component(out.resolve().name, "name")
    except ValueError:
        return f"{preset.name}-seed{seed}"


# ----------------------------------------------------------------------------------------------- generate
def generate_testset(
    dataset: str | os.PathLike | FaceDataset,
    preset: str | Preset,
    seed: int,
    out: str | os.PathLike,
    *,
    split: str | None = "test",
    workers: int = 1,
    ids: Iterable[str] | None = None,
    limit: int | None = None,
    name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> GenerateResult:
    """Write a test set to ``out`` (resuming a previous run with the same settings). See the module doc."""
    ds = dataset if isinstance(dataset, FaceDataset) else FaceDataset.load(dataset)
    preset = get_preset(preset)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TestSetError(f"seed must be an integer, got {seed!r}")
    seed = int(seed)
    out = Path(out)
    all_ids = ds.image_ids(split)
    if not all_ids:
        raise TestSetError(f"dataset {ds.root} has no kept images"
                           + (f" in split {split!r}" if split else ""))
    chosen = select_ids(all_ids, ids, limit)
    name = name or default_name(out, preset, seed)
    safe_component(name, "test set name")

    config = _config(preset, seed, ds, split)
    out.mkdir(parents=True, exist_ok=True)
    previous = _existing_records(out, config)
    partial = out / PARTIAL_DIR
    partial.mkdir(exist_ok=True)
    if n_tmp := _clean_interrupted(out):
        log.info("removed %d temporary file(s) of an interrupted run", n_tmp)
    write_bytes_atomic(partial / CONFIG_FILE, json.dumps(config, sort_keys=True).encode())

    records: dict[str, dict] = {}
    todo = []
    for iid in chosen:
        rec = previous.get(iid)
        lq = safe_join(out, lq_relpath(iid))
        if rec is not None and lq.is_file() and file_sha256(lq) == rec["lq_sha256"]:
            records[iid] = rec
        else:
            todo.append(iid)
    reused = len(records)
    preset_json = json.dumps(preset.to_dict(), sort_keys=True)
    tasks = [(iid, str(ds.image_path(iid)), preset_json, seed, str(out), True) for iid in todo]
    skipped: list[dict] = []
    done = [reused]

    with _open_records(partial / RECORDS_FILE) as log_f:
        def on_result(rec: dict) -> None:
            if "error" in rec:
                skipped.append({"image_id": rec["image_id"], "reason": rec["error"]})
                log.warning("skipped %s: %s", rec["image_id"], rec["error"])
            else:
                records[rec["image_id"]] = rec
                log_f.write(json.dumps(rec, sort_keys=True) + "\n")
                log_f.flush()
            done[0] += 1
            if progress:
                progress(done[0], len(chosen))

        _run_tasks(tasks, max(1, int(workers)), on_result)

    if not records:
        raise TestSetError(f"no image could be degraded ({len(skipped)} skipped: "
                           f"{skipped[0]['reason'] if skipped else 'none selected'})")
    result = _finalise(out, ds, preset, seed, split, name, records, sorted(skipped, key=lambda s: s["image_id"]))
    result.generated, result.reused = len(records) - reused, reused
    return result


def _finalise(out: Path, ds: FaceDataset, preset: Preset, seed: int, split: str | None, name: str,
              records: dict[str, dict], skipped: list[dict]) -> GenerateResult:
    ids = sorted(records)
    df = records_table([records[i] for i in ids])
    first = ["image_id", "seed", "kernel_sha256", "lq_sha256", "lq_pixel_sha256"]
    df = df[[c for c in first if c in df.columns] + sorted(c for c in df.columns if c not in first)]
    validate_params(df, out / PARAMS_FILE, n_images=len(ids), writing=True)  # bfrcore.formats.testset
    tmp = out / f".{PARAMS_FILE}.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, out / PARAMS_FILE)
    sums = {i: records[i]["lq_sha256"] for i in ids}
    write_bytes_atomic(out / CHECKSUMS_FILE, format_checksums(sums).encode())
    # stale images of earlier, larger runs into the same folder
    keep = set(ids)
    for f in (out / LQ_DIR).glob("*.png"):
        if f.stem not in keep:
            f.unlink()
    ts_hash = compute_testset_hash(ds.hash, sums)
    try:
        rel = os.path.relpath(ds.root.resolve(), out.resolve())
    except ValueError:  # other drive
        rel = None
    info = {
        "format": FORMAT_VERSION,
        "name": name,
        "preset": preset.to_dict(),
        "preset_name": preset.name,
        "preset_version": preset.version,
        "severity": preset.nominal_severity,
        "seed": seed,
        "seed_scheme": SEED_SCHEME,
        "jpeg_rounding": JPEG_ROUNDING,
        "split": split,
        "dataset": {"root": str(ds.root.resolve()), "root_relative": rel, "hash": ds.hash,
                    "image_size": ds.image_size},
        "n_images": len(ids),
        "testset_hash": ts_hash,
        "skipped": skipped,
        "versions": _versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    text = json.dumps(info, indent=2, sort_keys=True)
    validate_info(json.loads(text), out / INFO_FILE, writing=True)
    write_bytes_atomic(out / INFO_FILE, text.encode())
    shutil.rmtree(out / PARTIAL_DIR, ignore_errors=True)
    return GenerateResult(root=out, n_images=len(ids), generated=0, reused=0, skipped=skipped,
                          testset_hash=ts_hash)


# ----------------------------------------------------------------------------------------------- verify
@dataclass
class VerifyReport:
    n_images: int = 0
    ok: int = 0
    mismatched: list[dict] = field(default_factory=list)   # regenerated pixels differ from the recorded ones
    file_changed: list[str] = field(default_factory=list)  # file on disk differs from checksums.sha256
    missing: list[str] = field(default_factory=list)
    encoding_only: int = 0  # pixels equal, PNG bytes differ (another zlib); not an error

    @property
    def passed(self) -> bool:
        return not (self.mismatched or self.file_changed or self.missing)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "n_images": self.n_images, "ok": self.ok, "mismatched": self.mismatched,
                "file_changed": self.file_changed, "missing": self.missing, "encoding_only": self.encoding_only}


def verify_testset(root: str | os.PathLike, *, dataset_root: str | os.PathLike | None = None, workers: int = 1,
                   progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Regenerate every image of a test set from its recorded preset and seed and compare: the regenerated pixels
    must equal the recorded ``lq_pixel_sha256`` and the files on disk must match checksums.sha256."""
    ts = TestSet.load(root, dataset_root=dataset_root)
    ds = ts.dataset  # raises on a hash mismatch
    preset = get_preset(ts.info["preset"])
    sums = ts.checksums()
    rep = VerifyReport(n_images=len(ts.image_ids))
    for iid in ts.image_ids:
        p = ts.lq_path(iid)
        if not p.is_file():
            rep.missing.append(iid)
        elif iid not in sums or file_sha256(p) != sums[iid]:
            rep.file_changed.append(iid)
    preset_json = json.dumps(preset.to_dict(), sort_keys=True)
    tasks = [(iid, str(ds.image_path(iid)), preset_json, ts.seed, str(ts.root), False) for iid in ts.image_ids]
    n = [0]

    def on_result(rec: dict) -> None:
        iid = rec["image_id"]
        row = ts.params.loc[iid]
        n[0] += 1
        if progress:
            progress(n[0], len(tasks))
        if "error" in rec:
            rep.mismatched.append({"image_id": iid, "reason": rec["error"]})
            return
        if int(row["seed"]) != rec["seed"]:
            rep.mismatched.append({"image_id": iid, "reason": "recorded seed is not item_seed(seed, image_id)"})
        elif rec["lq_pixel_sha256"] != row["lq_pixel_sha256"]:
            info = {"image_id": iid, "reason": "pixels differ"}
            if ts.lq_path(iid).is_file():
                try:
                    lq, _ = degrade_image(read_image(ds.image_path(iid)), preset, item_seed(ts.seed, iid))
                    info["max_abs_diff"] = int(np.abs(lq.astype(int) - ts.read_lq(iid).astype(int)).max())
                except Exception as e:  # noqa: BLE001 - diagnostics only
                    log.debug("no pixel difference for %s: %s", iid, e)
            rep.mismatched.append(info)
        else:
            rep.ok += 1
            if rec["lq_sha256"] != row["lq_sha256"]:
                rep.encoding_only += 1

    _run_tasks(tasks, max(1, int(workers)), on_result)
    return rep

