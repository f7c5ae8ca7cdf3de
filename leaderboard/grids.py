"""Visual comparison grids: for chosen images, ``LQ | each model | GT | refs`` side by side.

Sources: restored outputs ``<run_dir>/restored/<image_id>.png`` (next to each summary.json), the LQ input from the
test-set folder (``testset.path`` of the summary, or a folder found under ``testset_roots`` whose testset.json has
the same ``testset_hash``), GT and references from the test set's dataset. Anything that cannot be found is drawn
as a grey "missing" tile and noted; a grid is never silently wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from bfrcore.results import METRICS_FILE as METRICS_NAME
from bfrcore.results import RESTORED_DIR
from bfrcore.safepath import UnsafePathError, safe_join
from leaderboard.tables import display_name, fmt_value, order_metrics

LABEL_H = 32
PAD = 4


@dataclass
class Grid:
    testset_name: str
    testset_hash: str
    mode: str
    image_ids: list[str]
    columns: list[str]
    png: Path
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.testset_name} · {self.mode}"


def _font(size: int = 11):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _tile(arr: np.ndarray | None, size: int) -> Image.Image:
    if arr is None:
        im = Image.new("RGB", (size, size), (200, 200, 200))
        d = ImageDraw.Draw(im)
        d.text((size // 2, size // 2), "missing", fill=(90, 90, 90), font=_font(12), anchor="mm")
        return im
    im = Image.fromarray(arr)
    h = max(1, round(size * im.height / im.width))
    im = im.resize((size, h), Image.Resampling.LANCZOS)
    if h != size:
        canvas = Image.new("RGB", (size, size), (255, 255, 255))
        canvas.paste(im.crop((0, 0, size, min(h, size))), (0, max(0, (size - h) // 2)))
        im = canvas
    return im


def _read(path: Path | None) -> np.ndarray | None:
    from bfrcore.imageio import ImageReadError, read_image

    if path is None or not path.is_file():
        return None
    try:
        return read_image(path)
    except ImageReadError:
        return None


def find_testset(testset_path: str, summary_path: str, testset_hash: str, roots: list[Path]) -> Path | None:
    """The test-set folder of a run: the recorded path (absolute, relative to the cwd or to the summary), else a
    folder under ``roots`` whose testset.json has the same hash."""
    cands: list[Path] = []
    if testset_path:
        p = Path(testset_path)
        cands += [p] if p.is_absolute() else [p, Path(summary_path).parent / p]
    for c in cands:
        if _testset_hash(c) == testset_hash:
            return c
    for r in roots:
        for info in sorted(Path(r).rglob("testset.json")):
            if _testset_hash(info.parent) == testset_hash:
                return info.parent
    return None


def _testset_hash(folder: Path) -> str | None:
    try:
        return json.loads((folder / "testset.json").read_text()).get("testset_hash")
    except (OSError, ValueError, AttributeError):
        return None


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "x"


def _per_image_values(run_dir: str, metrics: list[str]) -> pd.DataFrame | None:
    p = Path(run_dir) / METRICS_NAME
    if not p.is_file():
        return None
    try:
        m = pd.read_parquet(p)
    except Exception:  # noqa: BLE001
        return None
    if "image_id" not in m.columns:
        return None
    keep = ["image_id"] + [c for c in metrics if c in m.columns]
    return m[keep].drop_duplicates("image_id").set_index("image_id")


def choose_images(run_dirs: list[str], requested: list[str] | None, n_auto: int) -> list[str]:
    """The requested ids, or the first ``n_auto`` ids restored by every run (sorted)."""
    if requested:
        return list(dict.fromkeys(requested))
    sets = []
    for rd in run_dirs:
        d = Path(rd) / RESTORED_DIR
        sets.append({p.stem for p in d.glob("*.png")} if d.is_dir() else set())
    common = set.intersection(*sets) if sets else set()
    if not common:
        common = set.union(*sets) if sets else set()
    return sorted(common)[:n_auto]


def comparison_grids(df: pd.DataFrame, out_dir: Path, image_ids: list[str] | None = None, *, n_auto: int = 2,
                     max_refs: int = 3, tile: int = 160, testset_roots: list[Path] | None = None,
                     labels: dict[str, str] | None = None) -> list[Grid]:
    """One PNG per (test set, mode): a row per chosen image, columns LQ | each model | GT | refs."""
    from leaderboard.plots import run_labels

    grids: list[Grid] = []
    if df.empty:
        return grids
    roots = [Path(r) for r in (testset_roots or [])]
    font = _font(11)
    for (ts_name, ts_hash, mode), g in df.groupby(["testset_name", "testset_hash", "mode"], sort=True):
        runs = g.drop_duplicates("run_id").sort_values(["model", "model_config", "weights_sha256"])
        labs = labels or run_labels(runs)
        notes: list[str] = []
        ids = choose_images(list(runs["run_dir"]), image_ids, n_auto)
        if not ids:
            continue
        metrics = [m for m in order_metrics(g.loc[g["mean"].notna(), "metric"].unique())][:2]
        first = runs.iloc[0]
        ts_dir = find_testset(first["testset_path"], first["summary_path"], ts_hash, roots)
        ts = None
        if ts_dir is None:
            notes.append(f"test set {ts_name!r} ({ts_hash[:12]}) not found (recorded path "
                         f"{first['testset_path'] or 'none'!r}); LQ, GT and references are missing")
        else:
            try:
                from bfrcore.testset import TestSet

                ts = TestSet.load(ts_dir)
            except Exception as e:  # noqa: BLE001 - reported, grid still drawn
                notes.append(f"test set at {ts_dir} could not be opened: {e}")
        dataset = None
        if ts is not None:
            try:
                dataset = ts.dataset
            except Exception as e:  # noqa: BLE001
                notes.append(f"dataset of test set {ts_name!r} not available: {e}; GT and references are missing")
        per_image = {r["run_id"]: _per_image_values(r["run_dir"], metrics) for _, r in runs.iterrows()}
        columns = ["LQ"] + [labs[r] for r in runs["run_id"]] + ["GT"] + [f"ref {i + 1}" for i in range(max_refs)]
        ncols = len(columns)
        cell_w, cell_h = tile + PAD, tile + LABEL_H + PAD
        canvas = Image.new("RGB", (PAD + ncols * cell_w, PAD + len(ids) * cell_h), (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        for ri, iid in enumerate(ids):
            tiles: list[tuple[str, str, np.ndarray | None]] = []
            lq = None
            if ts is not None:
                try:
                    lq = _read(ts.lq_path(iid))
                except (KeyError, ValueError):
                    notes.append(f"{iid}: not in test set {ts_name!r}")
            tiles.append((f"LQ {iid}", "", lq))
            for _, r in runs.iterrows():
                try:
                    path = safe_join(r["run_dir"], RESTORED_DIR, f"{iid}.png")
                except UnsafePathError:
                    path = None
                arr = _read(path)
                if arr is None:
                    notes.append(f"{iid}: no restored image from {labs[r['run_id']]}")
                vals = per_image[r["run_id"]]
                line2 = ""
                if vals is not None and iid in vals.index:
                    line2 = "  ".join(f"{display_name(m)} {fmt_value(float(vals.at[iid, m]))}"
                                      for m in metrics if m in vals.columns and pd.notna(vals.at[iid, m]))
                tiles.append((labs[r["run_id"]], line2, arr))
            gt, refs = None, []
            if dataset is not None:
                try:
                    gt = dataset.read(iid)
                    refs = dataset.references_of(iid, max_refs)
                except Exception as e:  # noqa: BLE001
                    notes.append(f"{iid}: GT not readable: {e}")
            tiles.append(("GT", "", gt))
            for k in range(max_refs):
                if k < len(refs):
                    try:
                        tiles.append((f"ref {k + 1}", refs[k], dataset.read(refs[k])))
                    except Exception:  # noqa: BLE001
                        tiles.append((f"ref {k + 1}", refs[k], None))
                else:
                    tiles.append((f"ref {k + 1}", "none", None) if dataset is not None else (f"ref {k + 1}", "", None))
            y0 = PAD + ri * cell_h
            for ci, (l1, l2, arr) in enumerate(tiles):
                x0 = PAD + ci * cell_w
                draw.text((x0, y0), _fit_text(draw, l1, font, tile), fill=(0, 0, 0), font=font)
                if l2:
                    draw.text((x0, y0 + 14), _fit_text(draw, l2, font, tile), fill=(70, 70, 70), font=font)
                if arr is None and l2 == "none":
                    continue  # fewer references than columns: leave blank
                canvas.paste(_tile(arr, tile), (x0, y0 + LABEL_H))
        out_dir.mkdir(parents=True, exist_ok=True)
        png = out_dir / f"grid_{_slug(ts_name)}_{ts_hash[:8]}_{_slug(mode)}.png"
        canvas.save(png, compress_level=6)
        grids.append(Grid(ts_name, ts_hash, mode, ids, columns, png, sorted(set(notes))))
    return grids
