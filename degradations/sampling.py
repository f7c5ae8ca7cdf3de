"""Draw degradation parameters from a preset (:func:`sample_params`) and apply them (:func:`apply_params`).

Randomness lives only in :func:`sample_params`, which takes an explicit :class:`numpy.random.Generator` and returns
every value it drew as plain Python values (kernels as float64 arrays). :func:`apply_params` is a deterministic
function of ``(hq, params)``: noise is drawn inside it from ``Generator(PCG64(params["noise_seed"]))``, a seed that
was itself sampled. So any LQ image can be replayed from its recorded parameters.

The key set of the returned dict is fixed per preset (unused values are ``None``), so a test set's parameters form
a table. Keys (stage 2 of second-order presets repeats the stage-1 keys with the prefix ``s2_``):

    order                1 (classical) or 2 (Real-ESRGAN second order)
    blur                 bool: a kernel was applied
    kernel_type          iso | aniso | generalized_iso | generalized_aniso | plateau_iso | plateau_aniso | sinc | motion
    kernel_size          int
    sigma_x sigma_y theta beta omega_c motion_length motion_angle   (those the type uses, else None)
    kernel               float64 (k, k) array, sums to 1 (None when blur is False)
    scale                downsampling factor s (size -> floor(size / s)); 1.0 = no resize
    down_mode            resampling mode of the downsampling (None when scale == 1; for s2_ the mode of the
                         resize to floor(H / (target_scale · s2_scale)))
    noise_type           gaussian | poisson | None
    noise_sigma          Gaussian σ (0-255 scale) | None;  poisson_scale: Poisson scale | None
    noise_gray           bool | None;  noise_seed: int seed of the noise generator | None
    jpeg_quality         int | None
    up_mode              mode used to bring the LQ back to the input size
    color_shift_r/g/b    per-channel offsets on the [0, 1] scale | None
    gray                 bool
    jitter_order         permutation of "0123" (brightness, contrast, saturation, hue) | None
    brightness contrast saturation hue   | None
    target_scale final_sinc final_kernel_size final_omega_c final_kernel final_mode final_order  (order 2 only)
"""

from __future__ import annotations

import math

import numpy as np

from degradations import kernels as K
from degradations import ops
from degradations.presets import (
    BlurSpec,
    ColorJitterSpec,
    ColorShiftSpec,
    JpegSpec,
    NoiseSpec,
    Preset,
    Range,
    ResizeSpec,
)

#: Bumped whenever sampling or applying changes the bytes produced for a (preset, seed); recorded in testset.json.
IMPLEMENTATION_VERSION = "1"

#: The keys holding arrays (kernels); every other value is a plain bool/int/float/str/None.
ARRAY_KEYS = ("kernel", "s2_kernel", "final_kernel")


# ----------------------------------------------------------------------------------------------- primitives
def _uniform(r: Range, rng: np.random.Generator) -> float:
    """One draw from a :class:`Range` (fixed: no draw consumed)."""
    if r.is_fixed:
        return float(r.lo)
    if r.step is not None:
        k = int(rng.integers(0, r.n_steps() + 1))
        return float(round(r.lo + k * r.step, 10))
    return float(rng.uniform(r.lo, r.hi))


def _bernoulli(p: float, rng: np.random.Generator) -> bool:
    """True with probability p (p = 0 or 1 consume no draw)."""
    if p >= 1.0:
        return True
    if p <= 0.0:
        return False
    return bool(rng.random() < p)


def _choice(values, probs, rng: np.random.Generator):
    if len(values) == 1:
        return values[0]
    if probs is None:
        return values[int(rng.integers(0, len(values)))]
    p = np.asarray(probs, dtype=np.float64)
    return values[int(rng.choice(len(values), p=p / p.sum()))]


def jpeg_quality_from(u: float) -> int:
    """The JPEG rounding rule: quality = floor(u) for a drawn u (see docs/degradations.md)."""
    return math.floor(u)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2 ** 63 - 1))


# ----------------------------------------------------------------------------------------------- stage samplers
def _blur_keys(prefix: str) -> dict:
    return {f"{prefix}{k}": None for k in ("kernel_type", "kernel_size", "sigma_x", "sigma_y", "theta", "beta",
                                           "omega_c", "motion_length", "motion_angle", "kernel")}


def _beta(r: Range, rng: np.random.Generator) -> float:
    # BasicSR: beta ~ U(lo, 1) or U(1, hi) with probability 1/2 each
    if rng.random() < 0.5:
        return float(rng.uniform(r.lo, 1.0))
    return float(rng.uniform(1.0, r.hi))


def sample_kernel(spec: BlurSpec, rng: np.random.Generator, prefix: str = "") -> dict:
    """Draw one kernel of ``spec`` (always; ``spec.prob`` is handled by the caller)."""
    out = _blur_keys(prefix)
    size = int(_choice(spec.kernel_size, None, rng))
    ktype = _choice(spec.kernel_list, spec.kernel_prob, rng)
    p = {"kernel_type": ktype, "kernel_size": size}
    if ktype == "sinc":
        r = spec.sinc_cutoff_small if size < 13 else spec.sinc_cutoff
        p["omega_c"] = _uniform(r, rng)
    elif ktype == "motion":
        p["motion_length"] = _uniform(spec.motion_length, rng)
        p["motion_angle"] = _uniform(spec.motion_angle, rng)
        p["kernel_size"] = size = 2 * math.ceil(p["motion_length"] / 2) + 1
    else:
        sx = _uniform(spec.sigma_x, rng)
        if ktype.endswith("aniso"):
            sy = _uniform(spec.sigma_y if spec.sigma_y is not None else spec.sigma_x, rng)
            theta = _uniform(spec.rotation, rng)
        else:
            sy, theta = sx, 0.0
        p.update(sigma_x=sx, sigma_y=sy, theta=theta)
        if ktype.startswith("generalized"):
            p["beta"] = _beta(spec.betag, rng)
        elif ktype.startswith("plateau"):
            p["beta"] = _beta(spec.betap, rng)
    kernel = K.build_kernel(ktype, size, **{k: p.get(k) for k in (
        "sigma_x", "sigma_y", "theta", "beta", "omega_c", "motion_length", "motion_angle")})
    if spec.kernel_noise is not None and ktype in K.GAUSSIAN_TYPES and not ktype.startswith("plateau"):
        kernel = kernel * rng.uniform(spec.kernel_noise.lo, spec.kernel_noise.hi, size=kernel.shape)
        kernel = kernel / kernel.sum()
    p["kernel"] = kernel
    out.update({prefix + k: v for k, v in p.items()})
    return out


def _sample_blur(spec: BlurSpec | None, rng, prefix: str = "") -> dict:
    out = {f"{prefix}blur": False, **_blur_keys(prefix)}
    if spec is not None and _bernoulli(spec.prob, rng):
        out[f"{prefix}blur"] = True
        out.update(sample_kernel(spec, rng, prefix))
    return out


def _sample_resize(spec: ResizeSpec | None, rng, prefix: str = "") -> dict:
    scale = 1.0
    if spec is not None and _bernoulli(spec.prob, rng):
        if spec.updown_prob is not None:
            kind = _choice(("up", "down", "keep"), spec.updown_prob, rng)
            if kind == "up":
                scale = 1.0 / float(rng.uniform(1.0, spec.updown_range.hi))
            elif kind == "down":
                scale = 1.0 / float(rng.uniform(spec.updown_range.lo, 1.0))
        else:
            scale = _uniform(spec.scale, rng)
    mode = _choice(spec.modes, spec.mode_prob, rng) if spec is not None else None
    if scale == 1.0 and (spec is None or spec.updown_prob is None):
        mode = None  # no resize; (Real-ESRGAN's stage 2 resizes to H / target even when "keep")
    return {f"{prefix}scale": float(scale), f"{prefix}down_mode": mode}


def _sample_noise(spec: NoiseSpec | None, rng, prefix: str = "") -> dict:
    out = {f"{prefix}noise_type": None, f"{prefix}noise_sigma": None, f"{prefix}poisson_scale": None,
           f"{prefix}noise_gray": None, f"{prefix}noise_seed": None}
    if spec is None or not _bernoulli(spec.prob, rng):
        return out
    if _bernoulli(spec.gaussian_prob, rng):
        out[f"{prefix}noise_type"] = "gaussian"
        out[f"{prefix}noise_sigma"] = _uniform(spec.sigma, rng)
    else:
        out[f"{prefix}noise_type"] = "poisson"
        out[f"{prefix}poisson_scale"] = _uniform(spec.poisson_scale, rng)
    out[f"{prefix}noise_gray"] = _bernoulli(spec.gray_prob, rng)
    out[f"{prefix}noise_seed"] = _seed(rng)
    return out


def _sample_jpeg(spec: JpegSpec | None, rng, prefix: str = "") -> dict:
    q = None
    if spec is not None and _bernoulli(spec.prob, rng):
        q = jpeg_quality_from(_uniform(spec.quality, rng))
    return {f"{prefix}jpeg_quality": q}


def _sample_color(shift: ColorShiftSpec | None, gray_prob: float, jitter: ColorJitterSpec | None, rng) -> dict:
    out = {"color_shift_r": None, "color_shift_g": None, "color_shift_b": None, "gray": False,
           "jitter_order": None, "brightness": None, "contrast": None, "saturation": None, "hue": None}
    if shift is not None and _bernoulli(shift.prob, rng):
        vals = rng.uniform(-shift.shift / 255.0, shift.shift / 255.0, 3)
        out.update(color_shift_r=float(vals[0]), color_shift_g=float(vals[1]), color_shift_b=float(vals[2]))
    out["gray"] = _bernoulli(gray_prob, rng)
    if jitter is not None and _bernoulli(jitter.prob, rng):
        out["jitter_order"] = "".join(str(int(i)) for i in rng.permutation(4))
        out["brightness"] = _uniform(jitter.brightness, rng)
        out["contrast"] = _uniform(jitter.contrast, rng)
        out["saturation"] = _uniform(jitter.saturation, rng)
        out["hue"] = _uniform(jitter.hue, rng)
    return out


# ----------------------------------------------------------------------------------------------- public
def sample_params(preset: Preset, rng: np.random.Generator) -> dict:
    """Draw every degradation parameter of ``preset`` with ``rng`` (see the module doc for the keys)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (e.g. np.random.default_rng(seed))")
    p: dict = {"order": 2 if preset.second_order is not None else 1}
    p.update(_sample_blur(preset.blur, rng))
    p.update(_sample_resize(preset.resize, rng))
    p.update(_sample_noise(preset.noise, rng))
    p.update(_sample_jpeg(preset.jpeg, rng))
    so = preset.second_order
    if so is not None:
        p["target_scale"] = int(so.target_scale)
        p.update(_sample_blur(so.blur, rng, "s2_"))
        p.update(_sample_resize(so.resize, rng, "s2_"))
        p.update(_sample_noise(so.noise, rng, "s2_"))
        p.update(_sample_jpeg(so.jpeg, rng, "s2_"))
        p["final_order"] = "jpeg_first" if _bernoulli(so.jpeg_first_prob, rng) else "resize_first"
        p["final_mode"] = _choice(so.final_modes, None, rng)
        p.update(final_sinc=False, final_kernel_size=None, final_omega_c=None, final_kernel=None)
        if _bernoulli(so.final_sinc_prob, rng):
            size = int(_choice(so.final_sinc_size, None, rng))
            omega = _uniform(so.final_sinc_cutoff, rng)
            p.update(final_sinc=True, final_kernel_size=size, final_omega_c=omega,
                     final_kernel=K.circular_lowpass_kernel(omega, size))
    p["up_mode"] = preset.upsample
    p.update(_sample_color(preset.color_shift, preset.gray_prob, preset.color_jitter, rng))
    return p


def _noise(img: np.ndarray, p: dict, prefix: str) -> np.ndarray:
    kind = p.get(f"{prefix}noise_type")
    if kind is None:
        return img
    rng = np.random.Generator(np.random.PCG64(int(p[f"{prefix}noise_seed"])))
    gray = bool(p[f"{prefix}noise_gray"])
    if kind == "gaussian":
        return ops.add_gaussian_noise(img, float(p[f"{prefix}noise_sigma"]), rng, gray=gray)
    if kind == "poisson":
        return ops.add_poisson_noise(img, float(p[f"{prefix}poisson_scale"]), rng, gray=gray)
    raise ValueError(f"unknown noise type {kind!r}")


def _jpeg(img: np.ndarray, p: dict, prefix: str) -> np.ndarray:
    q = p.get(f"{prefix}jpeg_quality")
    if q is None:
        return img
    return ops.to_float(ops.jpeg_uint8(ops.to_uint8(img), int(q)))


def _blur(img: np.ndarray, p: dict, prefix: str) -> np.ndarray:
    if not p.get(f"{prefix}blur"):
        return ops.to_float(img)
    kernel = p.get(f"{prefix}kernel")
    if kernel is None:  # replay from the analytic parameters (e.g. a params.parquet row)
        kernel = kernel_from_params(p, prefix)
    if img.dtype == np.uint8:
        return ops.blur(img, kernel, scale=1 / 255.0)
    return ops.blur(img, kernel)


def kernel_from_params(p: dict, prefix: str = "") -> np.ndarray:
    """Rebuild a (noise-free) kernel from its recorded analytic parameters."""
    return K.build_kernel(p[f"{prefix}kernel_type"], int(p[f"{prefix}kernel_size"]), **{
        k: p.get(f"{prefix}{k}") for k in ("sigma_x", "sigma_y", "theta", "beta", "omega_c", "motion_length",
                                           "motion_angle")})


def apply_params(hq: np.ndarray, params: dict) -> np.ndarray:
    """Apply recorded parameters to ``hq`` (uint8 (H, W, 3) RGB); returns uint8 (H, W, 3) of the same size."""
    return apply_params_with_info(hq, params)[0]


def apply_params_with_info(hq: np.ndarray, params: dict) -> tuple[np.ndarray, dict]:
    """:func:`apply_params` plus ``{"lq_height", "lq_width"}``: the size of the degraded image before it is
    brought back to the input size."""
    hq = ops.check_image(hq, "hq")
    if hq.dtype != np.uint8:
        raise TypeError(f"hq must be uint8, got {hq.dtype}")
    h, w = hq.shape[:2]
    p = params
    # ---- first order: blur, resize, noise, JPEG
    x = _blur(hq, p, "")
    if p["scale"] != 1.0:
        x = ops.resize(x, ops.downscaled_size(h, w, p["scale"]), p["down_mode"])
    x = _noise(x, p, "")
    x = _jpeg(x, p, "")
    if p.get("order", 1) == 2:
        t = int(p["target_scale"])
        x = _blur(x, p, "s2_")
        x = ops.resize(x, ops.downscaled_size(h, w, t * p["s2_scale"]), p["s2_down_mode"])
        x = _noise(x, p, "s2_")
        final_size = (max(1, h // t), max(1, w // t))

        def resize_sinc(img):
            img = ops.resize(img, final_size, p["final_mode"])
            if p.get("final_sinc"):
                k = p.get("final_kernel")
                if k is None:
                    k = K.circular_lowpass_kernel(float(p["final_omega_c"]), int(p["final_kernel_size"]))
                img = ops.blur(img, k)
            return img

        if p["final_order"] == "jpeg_first":
            x = resize_sinc(_jpeg(x, p, "s2_"))
        else:
            x = _jpeg(resize_sinc(x), p, "s2_")
        x = ops.to_float(ops.to_uint8(x))  # Real-ESRGAN: clamp((out * 255).round(), 0, 255) / 255
    info = {"lq_height": int(x.shape[0]), "lq_width": int(x.shape[1])}
    # ---- back to the input size, then colour
    x = ops.resize(x, (h, w), p["up_mode"])
    if p.get("color_shift_r") is not None:
        x = ops.color_shift(x, (p["color_shift_r"], p["color_shift_g"], p["color_shift_b"]))
    if p.get("gray"):
        x = ops.to_gray(x)
    if p.get("jitter_order"):
        x = ops.color_jitter(x, [int(c) for c in p["jitter_order"]], p["brightness"], p["contrast"],
                             p["saturation"], p["hue"])
    return ops.to_uint8(x), info


_STR_KEYS = ("kernel_type", "down_mode", "noise_type", "up_mode", "final_order", "final_mode", "jitter_order")
_BOOL_KEYS = ("blur", "noise_gray", "gray", "final_sinc")
_INT_KEYS = ("order", "kernel_size", "noise_seed", "jpeg_quality", "target_scale", "final_kernel_size", "lq_height",
             "lq_width", "seed")


def param_dtype(key: str) -> str:
    """The pandas (nullable) dtype of a parameter column: string, boolean, Int64 or Float64."""
    base = key.removeprefix("s2_")
    if base in _STR_KEYS or base.endswith("sha256") or base == "image_id":
        return "string"
    if base in _BOOL_KEYS:
        return "boolean"
    if base in _INT_KEYS:
        return "Int64"
    return "Float64"


def params_to_record(params: dict) -> dict:
    """A params dict as one table row: arrays replaced by their sha256 (``kernel`` -> ``kernel_sha256`` …), numpy
    scalars made plain."""
    row = {}
    for k, v in params.items():
        if k in ARRAY_KEYS:
            row[f"{k}_sha256"] = K.kernel_sha256(v)
        elif isinstance(v, np.generic):
            row[k] = v.item()
        else:
            row[k] = v
    return row
