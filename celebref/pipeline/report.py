"""A self-contained HTML report of a build (``<out>/report.html``: inline CSS, thumbnails and plots as data URIs,
no external resources): counts funnel, rejection reasons with example thumbnails, quality histograms with the
thresholds, cluster quality against truth labels, stage timings and per-identity grids."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from bfrcore.imageio import write_bytes_atomic
from celebref.pipeline.config import BuildConfig

THUMB = 72

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;font-size:13px;text-align:left}
th{background:#f4f4f4}.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#4a7bd0;height:12px;display:inline-block}
.grid{display:flex;flex-wrap:wrap;gap:4px;margin:4px 0 12px}
.grid figure{margin:0;width:72px;font-size:10px;text-align:center;overflow:hidden}
.grid img{width:72px;height:72px;display:block}.rej img{outline:3px solid #d33;outline-offset:-3px}
.ident{margin-bottom:10px}.muted{color:#777;font-size:12px}.hists img{max-width:330px;margin:4px}
code{background:#f4f4f4;padding:0 3px}
"""


def _thumb(path: str | None, size: int = THUMB) -> str | None:
    if not path or not Path(path).is_file():
        return None
    try:
        from PIL import Image

        im = Image.open(path).convert("RGB")
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=80)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    except Exception:
        return None


def _fig(title: str, kept: np.ndarray, rej: np.ndarray, thresholds: list[tuple[str, float]]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kept = kept[np.isfinite(kept)]
    rej = rej[np.isfinite(rej)]
    if kept.size + rej.size == 0:
        return None
    fig, ax = plt.subplots(figsize=(4.2, 2.6), dpi=80)
    allv = np.concatenate([kept, rej])
    bins = np.histogram_bin_edges(allv, bins=30)
    ax.hist([kept, rej], bins=bins, stacked=True, color=["#4a7bd0", "#d35d5d"], label=["kept", "rejected"])
    for name, t in thresholds:
        ax.axvline(t, color="k", ls="--", lw=1)
        ax.text(t, ax.get_ylim()[1] * 0.95, f" {name}", fontsize=7, va="top")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _esc(v) -> str:
    return html.escape("" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))


HIST_COLUMNS = (
    ("eye_distance", "eye distance in the source (px)", ("min_eye_distance",)),
    ("sharpness", "sharpness (Laplacian variance)", ("min_sharpness",)),
    ("niqe", "NIQE (lower is better)", ("max_niqe",)),
    ("brightness", "face brightness (mean luma)", ("min_brightness", "max_brightness")),
    ("chroma", "chroma (CIELAB)", ("min_chroma",)),
    ("tone_r2", "colour explained by lightness (sepia)", ("max_tone_r2",)),
    ("noise_ratio", "noise ratio", ("max_noise_ratio",)),
    ("yaw", "yaw (deg)", ("max_abs_yaw",)),
    ("padded_fraction", "mirror-padded share of the crop", ("max_padded_fraction",)),
    ("blockiness", "JPEG blockiness (source)", ("max_blockiness",)),
    ("jpeg_quality", "JPEG quality of the source", ("min_jpeg_quality",)),
    ("upsample_factor", "upsampling factor of the crop", ()),
)


def funnel_rows(counts: dict) -> list[tuple[str, float]]:
    """The numeric funnel counts in pipeline order (:data:`celebref.pipeline.output.FUNNEL_STEPS`; any other
    numeric count after them, sorted)."""
    from celebref.pipeline.output import FUNNEL_STEPS

    rows = [(k, counts[k]) for k in FUNNEL_STEPS if isinstance(counts.get(k), (int, float))]
    rows += [(k, v) for k, v in sorted(counts.items()) if k not in FUNNEL_STEPS and isinstance(v, (int, float))]
    return rows


def render_report(result, cfg: BuildConfig, faces_crop: dict[str, str], scores: dict | None = None,
                  source_paths: dict[str, str] | None = None) -> str:
    m: pd.DataFrame = result.manifest
    info = result.info
    counts = info.get("counts", {})
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>celebref build report</title>"
             f"<style>{CSS}</style></head><body>"]
    parts.append("<h1>celebref build report</h1>")
    parts.append(f"<p class='muted'>{_esc(info.get('created'))} · sources: "
                 + ", ".join(f"<code>{_esc(s)}</code>" for s in info.get("sources", []))
                 + f" · dataset hash <code>{_esc(info.get('dataset_hash', '')[:16])}</code></p>")
    res = info.get("resolved", {})
    parts.append("<p>" + " · ".join(f"{_esc(k)}: <b>{_esc(v)}</b>" for k, v in res.items()) + "</p>")

    # funnel
    parts.append("<h2>Funnel</h2><table><tr><th>step</th><th>count</th><th></th></tr>")
    funnel = funnel_rows(counts)
    top = max([v for _, v in funnel] + [1])
    for k, v in funnel:
        parts.append(f"<tr><td>{_esc(k)}</td><td class='num'>{v}</td>"
                     f"<td><span class='bar' style='width:{int(300 * v / top)}px'></span></td></tr>")
    parts.append("</table>")

    # rejection reasons with examples
    parts.append("<h2>Rejections by stage and reason</h2>")
    rej = m[~m["kept"]]
    n_ex = cfg.output.report_examples_per_reason
    if rej.empty:
        parts.append("<p>none</p>")
    for (stage, reason), grp in rej.groupby(["reject_stage", "reject_reason"], sort=True):
        parts.append(f"<h3>{_esc(stage)} · {_esc(reason)} <span class='muted'>({len(grp)})</span></h3>")
        det = grp["reject_detail"].dropna()
        if len(det):
            parts.append(f"<p class='muted'>e.g. {_esc(det.iloc[0])}</p>")
        parts.append("<div class='grid'>")
        for _, r in grp.head(n_ex).iterrows():
            src = faces_crop.get(r["face_id"]) or (source_paths or {}).get(r.get("source_sha256") or "")
            t = _thumb(src)
            label = _esc(Path(str(r["source_path"])).name)[:18]
            img = f"<img src='{t}' alt=''>" if t else "<div style='width:72px;height:72px;background:#eee'></div>"
            parts.append(f"<figure class='rej' title='{_esc(r['source_path'])}: {_esc(r['reject_detail'])}'>"
                         f"{img}{label}</figure>")
        parts.append("</div>")

    # quality histograms
    parts.append("<h2>Quality scores</h2><p class='muted'>blue: kept, red: rejected (any stage); dashed: the "
                 "configured thresholds</p><div class='hists'>")
    faces_rows = m[m["face_index"].fillna(-1) >= 0]
    for col, title, keys in HIST_COLUMNS:
        if col not in faces_rows.columns:
            continue
        vals = pd.to_numeric(faces_rows[col], errors="coerce").to_numpy(dtype=np.float64)
        kept_mask = faces_rows["kept"].to_numpy(bool)
        thr = []
        for k in keys:
            t = getattr(cfg.quality, k)
            if t is not None:
                thr += [(k, float(t))] + ([(k, -float(t))] if k == "max_abs_yaw" else [])
        src = _fig(title, vals[kept_mask], vals[~kept_mask], thr)
        if src:
            parts.append(f"<img src='{src}' alt='{_esc(title)}'>")
    parts.append("</div>")

    # cluster quality
    cq = info.get("cluster_quality")
    if cq and cq.get("clusters"):
        parts.append("<h2>Cluster quality against truth labels</h2><table><tr><th></th>"
                     + "".join(f"<th>{k}</th>" for k in ("n", "n_clusters", "n_labels", "pairwise_precision",
                                                         "pairwise_recall", "pairwise_f1", "bcubed_precision",
                                                         "bcubed_recall", "bcubed_f1")) + "</tr>")
        for what in ("clusters", "identities"):
            s = cq.get(what, {})
            parts.append(f"<tr><td>{what}</td>" + "".join(
                f"<td class='num'>{s.get(k):.4g}</td>" if isinstance(s.get(k), float) else
                f"<td class='num'>{_esc(s.get(k))}</td>"
                for k in ("n", "n_clusters", "n_labels", "pairwise_precision", "pairwise_recall", "pairwise_f1",
                          "bcubed_precision", "bcubed_recall", "bcubed_f1")) + "</tr>")
        parts.append("</table>")

    # timings
    parts.append("<h2>Stage timings</h2><table><tr><th>stage</th><th>details</th></tr>")
    for k, v in info.get("timings", {}).items():
        parts.append(f"<tr><td>{_esc(k)}</td><td><code>{_esc(json.dumps(v, sort_keys=True))}</code></td></tr>")
    parts.append("</table>")

    # identities
    ids = result.identities
    parts.append(f"<h2>Identities ({len(ids)})</h2>")
    if len(ids) > cfg.output.report_max_identities:
        parts.append(f"<p class='muted'>showing the first {cfg.output.report_max_identities}</p>")
    kept = m[m["kept"]]
    for _, ir in ids.head(cfg.output.report_max_identities).iterrows():
        ident = ir["identity"]
        parts.append(f"<div class='ident'><b>{_esc(ident)}</b> {_esc(ir['name'])} · {_esc(ir['split'])} · "
                     f"{int(ir['n_images'])} images<div class='grid'>")
        for _, r in kept[kept["identity"] == ident].sort_values("n").iterrows():
            t = _thumb(str(result.out / r["path"]))
            parts.append(f"<figure title='{_esc(r['source_path'])}'><img src='{t}' alt=''>{int(r['n'])}</figure>")
        for _, r in m[(~m["kept"]) & (m["identity"] == ident)].iterrows():
            t = _thumb(faces_crop.get(r["face_id"]))
            parts.append(f"<figure class='rej' title='{_esc(r['reject_reason'])}: {_esc(r['reject_detail'])}'>"
                         f"<img src='{t}' alt=''>{_esc(r['reject_reason'])[:12]}</figure>")
        parts.append("</div></div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(result, cfg: BuildConfig, faces_crop: dict[str, str], scores: dict | None = None,
                 source_paths: dict[str, str] | None = None) -> Path:
    """Write ``<out>/report.html``. ``source_paths``: source sha256 -> a readable copy of that photo, for the
    thumbnails of photo-level rejections (exact duplicates show the photo they duplicate; photos without a face)."""
    text = render_report(result, cfg, faces_crop, scores, source_paths)
    path = result.out / "report.html"
    write_bytes_atomic(path, text.encode("utf-8"))
    return path
