"""Stage 4, quality: per-face scores (cached per item) and threshold decisions (recomputed on every run: cheap;
:func:`decide_stage` writes each face record's :class:`~celebref.pipeline.records.QualityDecision` and its
``quality`` rejection).

Scores, all on the aligned crop unless noted (the face region is the fixed FFHQ face box, 96..406 x 156..465
at 512 px, scaled to the crop size):

- ``eye_distance`` (faces stage): eye-centre distance in the *source* photo, the face's real resolution;
  ``upsample_factor``: output side / quad side in the source (> 1: the crop was upsampled)
- ``sharpness``: variance of the 3x3 Laplacian of the grey face region, computed at 512 px
- ``niqe``: NIQE (BasicSR convention: Y channel, crop_border 0, the ``niqe-basicsr`` pristine parameters) of the
  aligned crop, from :mod:`bfrcore.metrics.niqe_numpy` (the numpy twin of the evaluation's torch NIQE, no torch
  in the workers) when its parameter file is present; otherwise the score is missing and ``niqe_status`` says why
  (it never runs with missing parameters)
- ``brightness`` (mean luma of the face region) and ``clipped`` (share of face pixels <= 4 or >= 251)
- ``chroma`` (mean CIELAB a*b* radius over the crop: ~0 for greyscale) and ``tone_r2`` (share of the colour
  variance explained by lightness: ~1 for sepia and other toned prints); sepia = high tone_r2 and low chroma
- ``noise_ratio``: mean |grey - median5(grey)| of the face region / sqrt(sharpness): halftone screens, speckle and
  scanner noise (which inflate the Laplacian variance of printed/old photos) stand out
- ``jpeg_quality`` (IJG quality of a JPEG source, from its quantisation tables) and ``blockiness`` (source face
  region; faces stage)
- ``yaw``, ``pitch``, ``roll`` (faces stage), ``padded_fraction`` (share of the crop outside the photo, i.e.
  filled by FFHQ mirror padding; unknown (null) for already-aligned inputs, whose source photo is not available)
- ``phash``: 64-bit DCT perceptual hash (hex) for near-duplicate detection

Watermark/text detection is not implemented (no offline text detector in the pinned stack): documented gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from celebref.pipeline.config import QualityConfig
from celebref.pipeline.records import BuildRecords, QualityDecision

VERSION = "3"


@dataclass(frozen=True)
class QualityParams:
    niqe: bool


def face_region(img: np.ndarray) -> np.ndarray:
    from bfrcore.faces.embed import ALIGNED_FACE_BOX_512

    s = img.shape[0] / 512.0
    x1, y1, x2, y2 = (int(round(v * s)) for v in ALIGNED_FACE_BOX_512)
    return img[y1:y2, x1:x2]


def _grey(img: np.ndarray) -> np.ndarray:
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def sharpness(img: np.ndarray) -> float:
    import cv2

    if img.shape[0] != 512:
        img = cv2.resize(img, (512, 512), interpolation=cv2.INTER_AREA if img.shape[0] > 512 else cv2.INTER_CUBIC)
    g = _grey(face_region(img).astype(np.float64))
    return float(cv2.Laplacian(g, cv2.CV_64F, ksize=1).var())


def exposure(img: np.ndarray) -> tuple[float, float]:
    y = _grey(face_region(img).astype(np.float64))
    return float(y.mean()), float(((y <= 4) | (y >= 251)).mean())


def colour(img: np.ndarray) -> tuple[float, float]:
    """(chroma, tone_r2): mean CIELAB a*b* radius of the crop, and the share of the a*/b* variance explained by
    lightness (a*, b* averaged in 32 lightness bins). A toned print (sepia, cyanotype) has colour that is a
    function of lightness (tone_r2 near 1); a colour photo has colours independent of it (lips, eyes, background)."""
    import cv2

    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float64)
    lum = lab[..., 0].ravel()
    a, b = lab[..., 1].ravel() - 128.0, lab[..., 2].ravel() - 128.0
    chroma = float(np.hypot(a, b).mean())
    total = a.var() + b.var()
    if total < 1e-6:
        return chroma, 1.0
    bins = np.clip((lum / 8).astype(np.int64), 0, 31)
    n = np.bincount(bins, minlength=32).astype(np.float64)
    within = 0.0
    for ch in (a, b):
        s1 = np.bincount(bins, ch, minlength=32)
        s2 = np.bincount(bins, ch * ch, minlength=32)
        nz = n > 0
        within += float((s2[nz] - s1[nz] ** 2 / n[nz]).sum())
    return chroma, float(1.0 - within / len(lum) / total)


def noise_ratio(img: np.ndarray, sharp: float) -> float:
    """Impulse/halftone noise indicator: mean |grey - median5(grey)| of the face region over sqrt(sharpness).
    Fine texture and edges raise both terms together; print screens, scanner noise and speckle raise the median
    residual much more than the Laplacian energy."""
    import cv2

    if img.shape[0] != 512:
        img = cv2.resize(img, (512, 512), interpolation=cv2.INTER_AREA if img.shape[0] > 512 else cv2.INTER_CUBIC)
    g = cv2.cvtColor(np.ascontiguousarray(face_region(img)), cv2.COLOR_RGB2GRAY)
    r = np.abs(g.astype(np.float64) - cv2.medianBlur(g, 5).astype(np.float64)).mean()
    return float(r / max(np.sqrt(max(sharp, 0.0)), 1e-6))


def phash(img: np.ndarray) -> str:
    """64-bit perceptual hash: DCT of the 32x32 grey image, low 8x8 block thresholded at its median."""
    import cv2
    from scipy.fft import dctn

    g = cv2.resize(_grey(img.astype(np.float64)), (32, 32), interpolation=cv2.INTER_AREA)
    low = dctn(g, norm="ortho")[:8, :8]
    bits = (low > np.median(low)).reshape(-1)
    v = 0
    for bit in bits:
        v = (v << 1) | int(bit)
    return f"{v:016x}"


def hamming_hex(a: str, b: str) -> int:
    return int(bin(int(a, 16) ^ int(b, 16)).count("1"))


_NIQE = None


def niqe_backend():
    """(callable img->float, None) when the niqe-basicsr parameters are usable, else (None, reason). NIQE by
    :mod:`bfrcore.metrics.niqe_numpy`, the numpy twin of the evaluation's torch NIQE (the same arithmetic, within
    4.5e-13 of it on 110 real photos, tested): the build's workers never import torch for it."""
    global _NIQE
    if _NIQE is not None:
        return _NIQE
    from bfrcore import weights
    from bfrcore.metrics import niqe_numpy

    if weights.locate("niqe-basicsr") is None:
        _NIQE = (None, "unavailable: missing pretrained file niqe-basicsr (fix: `bench weights fetch niqe-basicsr`)")
        return _NIQE
    try:
        params = niqe_numpy.load_pristine_params(str(weights.require("niqe-basicsr")))
    except Exception as e:  # a corrupt/unverified parameter file: never run without it
        _NIQE = (None, f"unavailable: niqe-basicsr parameters not usable ({type(e).__name__}: {str(e)[:120]})")
        return _NIQE

    def run(img: np.ndarray) -> float:
        return float(niqe_numpy.niqe(np.asarray(img, dtype=np.uint8), params))

    _NIQE = (run, None)
    return _NIQE


def score_item(item: dict, params: QualityParams) -> tuple[dict | None, str | None]:
    """Scores for every face of one item. ``item['faces']``: [{face_id, crop, aligned_input}] (+ ``pixels`` of
    the crop when run in the faces pass)."""
    from celebref.pipeline.faces_stage import crop_pixels

    out = {}
    niqe_fn, niqe_why = niqe_backend() if params.niqe else (None, "disabled")
    for f in item["faces"]:
        img = crop_pixels(f)
        bright, clipped = exposure(img)
        chroma, tone = colour(img)
        sharp = sharpness(img)
        rec = {"sharpness": sharp, "noise_ratio": noise_ratio(img, sharp), "brightness": bright, "clipped": clipped,
               "chroma": chroma, "tone_r2": tone, "phash": phash(img), "niqe": None,
               "niqe_status": niqe_why or "ok"}
        if niqe_fn is not None:
            try:
                rec["niqe"] = niqe_fn(img)
            except Exception as e:  # a face NIQE cannot score is recorded, never a crash
                rec["niqe_status"] = f"failed: {type(e).__name__}: {str(e)[:120]}"
        out[f["face_id"]] = rec
    return {"scores": out}, None


# ------------------------------------------------------------------------------------------- decisions
#: (score column, config field, comparison, reason) in the order checks are applied; the first failing check is
#: the face's reject_reason, all failing checks are listed in quality_flags
CHECKS = (
    ("eye_distance", "min_eye_distance", ">=", "low_face_resolution"),
    ("padded_fraction", "max_padded_fraction", "<=", "mirror_padding"),
    ("abs_yaw", "max_abs_yaw", "<=", "extreme_pose_yaw"),
    ("abs_roll", "max_abs_roll", "<=", "extreme_pose_roll"),
    ("brightness", "min_brightness", ">=", "underexposed"),
    ("brightness", "max_brightness", "<=", "overexposed"),
    ("clipped", "max_clipped", "<=", "clipped_exposure"),
    ("chroma", "min_chroma", ">=", "greyscale"),
    ("jpeg_quality", "min_jpeg_quality", ">=", "heavy_jpeg"),
    ("blockiness", "max_blockiness", "<=", "jpeg_blocking"),
    ("sharpness", "min_sharpness", ">=", "blurry"),
    ("noise_ratio", "max_noise_ratio", "<=", "noisy"),
    ("niqe", "max_niqe", "<=", "low_niqe_quality"),
)


def decide(scores: dict, cfg: QualityConfig) -> tuple[str | None, str | None, list[str]]:
    """(reason, detail, all failing reasons) for one face's scores; missing scores never reject."""
    flags, first, detail = [], None, None
    vals = dict(scores)
    vals["abs_yaw"] = abs(vals["yaw"]) if vals.get("yaw") is not None else None
    vals["abs_roll"] = abs(vals["roll"]) if vals.get("roll") is not None else None
    for col, key, op, reason in CHECKS:
        thr = getattr(cfg, key)
        v = vals.get(col)
        if thr is None or v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        bad = v < thr if op == ">=" else v > thr
        if bad:
            flags.append(reason)
            if first is None:
                first, detail = reason, f"{col}={v:.4g} {'<' if op == '>=' else '>'} {key}={thr:g}"
    # sepia / toned print: colour explained by lightness, with little chroma (greyscale already caught above)
    if cfg.max_tone_r2 is not None and vals.get("tone_r2") is not None and "greyscale" not in flags:
        ch = vals.get("chroma") or 0.0
        if vals["tone_r2"] > cfg.max_tone_r2 and ch < cfg.sepia_max_chroma:
            flags.append("sepia")
            if first is None:
                first = "sepia"
                detail = (f"tone_r2={vals['tone_r2']:.3f} > max_tone_r2={cfg.max_tone_r2:g} with "
                          f"chroma={ch:.3g} < sepia_max_chroma={cfg.sepia_max_chroma:g}")
    return first, detail, flags


def decide_stage(records: BuildRecords, cfg: QualityConfig) -> None:
    """Decide every clustered face (identity rejects included: their flags are recorded too); a failing face not
    rejected by an earlier stage is rejected with stage ``quality`` and its first failing check."""
    for face in records.clustered():
        reason, detail, flags = decide(face.measures, cfg)
        face.quality = QualityDecision(reason, detail, tuple(flags))
        if reason:
            face.reject("quality", reason, detail)
