"""Restore real images with any model of the zoo: aligned faces or whole photos (`bench restore`).

Two kinds of input, decided per image (``aligned="auto"``) or forced (``"yes"`` / ``"no"``):

- **aligned** faces (square, FFHQ-aligned crops of any size): resized (bicubic) to the model's input size; the
  68 landmarks come from the offline detector (dlib HOG + 68-point regressor) run on the image at its own
  resolution and scaled, falling back to the mean FFHQ face layout when no face is found (source ``mean_face``,
  as :mod:`baselines.landmarks` does). The output is the restored face at the model's size.
- **whole photos**: every face is detected, FFHQ-aligned to the model's size (:func:`bfrcore.faces.align_face`,
  the same recipe as the datasets), restored, and pasted back into the photo with the inverse of the stored
  affine transform and a feathered mask (:func:`paste_back`). Outputs: the photo (same size as the input) and
  one restored crop per face (plus the aligned input crop, for comparison).

``auto``: a square image is taken as an aligned face when its main face's FFHQ square covers about the whole
image (side 0.6-1.6x the image, centred within 15 %), or when no face is found in it and its side is at most
1024 (degraded aligned faces often defeat the detector); everything else is a whole photo.

References (``refs``): a folder of aligned faces or photos of the same person (for photos the largest face is
used), prepared with the same pipeline; used for every input (specific mode) by models that use references.

Bad inputs (unreadable file, no face in a photo, a failing restore) are skipped and recorded in the manifest;
:func:`restore_folder` raises :class:`RestoreArgumentError` (a :class:`bfrcore.errors.InputError`: exit 2) only for
bad arguments.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines.base import RestorationModel
from baselines.registry import UNTRAINED_NOTE, get_model_info, is_untrained, untrained_error
from bfrcore.cpu_allocator import reuse_freed_memory
from bfrcore.errors import InputError
from bfrcore.imageio import ImageReadError, read_image, write_bytes_atomic, write_png
from bfrcore.progress import progress
from bfrcore.tensor_images import resize_uint8, to_tensor, to_uint8

log = logging.getLogger("celebref.restore")


class RestoreArgumentError(InputError):
    """A bad argument of :func:`restore_folder` / :class:`FaceRestorer` (missing input, unknown model, a model that
    needs references without usable ones, ...): the run stops (exit 2); a bad image is skipped and recorded instead."""


MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "celebref.restore/1"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
ALIGNED_CHOICES = ("auto", "yes", "no")
#: photos larger than this (longest side, px) are searched for faces on a downscaled copy; landmarks are then
#: regressed at full resolution inside the rescaled boxes
DETECT_MAX_SIDE = 1280
#: auto mode: a square image without a detected face is taken as an aligned face up to this side
AUTO_ALIGNED_MAX_SIDE = 1024


# ------------------------------------------------------------------------------------------------ helpers
def list_images(path: Path) -> tuple[list[Path], list[str]]:
    """Image files of a folder (sorted, not recursive, hidden files left out) or the one file given; also the
    names of the folder's other files (ignored: not an image suffix)."""
    path = Path(path)
    if path.is_file():
        return [path], []
    if not path.is_dir():
        raise RestoreArgumentError(f"input {path} does not exist")
    files, ignored = [], []
    for p in sorted(path.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        (files if p.suffix.lower() in IMAGE_SUFFIXES else ignored).append(p)
    return files, [p.name for p in ignored]


def output_names(files: list[Path]) -> dict[Path, str]:
    """Output PNG name per input: ``<stem>.png``; stems shared by several inputs get ``<stem>_<ext>.png``."""
    stems: dict[str, int] = {}
    for f in files:
        stems[f.stem] = stems.get(f.stem, 0) + 1
    return {f: (f"{f.stem}.png" if stems[f.stem] == 1 else f"{f.stem}_{f.suffix.lstrip('.').lower()}.png")
            for f in files}


def face_mask(size: int, feather: float = 0.08) -> np.ndarray:
    """(size, size) float32 blending mask of an aligned face: 1 inside, falling smoothly (smoothstep) to 0 at the
    crop's border over ``feather`` * size pixels."""
    width = max(float(feather) * size, 1.0)
    d = np.minimum(np.arange(size) + 0.5, size - (np.arange(size) + 0.5)).astype(np.float32)
    ramp = np.clip(d / width, 0.0, 1.0)
    ramp = ramp * ramp * (3.0 - 2.0 * ramp)
    return np.minimum(ramp[:, None], ramp[None, :]).astype(np.float32)


def paste_back(photo: np.ndarray, face: np.ndarray, transform, *, feather: float = 0.08
               ) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Paste the restored aligned ``face`` (S, S, 3) uint8 back into ``photo`` (H, W, 3) uint8.

    ``transform``: the :class:`bfrcore.faces.AlignTransform` of the crop (any S: the map is rescaled from
    ``transform.size``). Each photo pixel samples the face through the inverse affine map (bilinear) and is blended
    with the feathered :func:`face_mask` warped the same way. Only the face square's bounding box is touched and
    pixels where the warped mask is 0 keep their exact values. Returns (new photo, touched box x0, y0, x1, y1)."""
    import cv2

    h, w = photo.shape[:2]
    s = face.shape[0]
    m = np.asarray(transform.matrix(), np.float64)  # source pixels -> aligned pixels at transform.size
    if s != transform.size:  # pixel-centre rescale: p' = (p + 0.5) * k - 0.5
        k = s / transform.size
        m = m * k
        m[:, 2] += 0.5 * k - 0.5
    quad = np.asarray(transform.quad, np.float64)
    x0, y0 = (max(math.floor(v) - 2, 0) for v in quad.min(0))
    x1, y1 = (min(math.ceil(v) + 3, lim) for v, lim in zip(quad.max(0), (w, h)))
    out = photo.copy()
    if x1 <= x0 or y1 <= y0:
        return out, (0, 0, 0, 0)
    mr = m.copy()
    mr[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)  # ROI pixel (u, v) is photo pixel (u + x0, v + y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(face.astype(np.float32), mr, (x1 - x0, y1 - y0), flags=flags,
                            borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(face_mask(s, feather), mr, (x1 - x0, y1 - y0), flags=flags,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    roi = out[y0:y1, x0:x1].astype(np.float32)
    roi += (warped - roi) * mask[..., None]
    out[y0:y1, x0:x1] = np.clip(np.rint(roi), 0, 255).astype(np.uint8)
    return out, (x0, y0, x1, y1)


# ------------------------------------------------------------------------------------------------ faces
@dataclass
class FoundFace:
    box: tuple[float, float, float, float]
    score: float
    landmarks68: np.ndarray

    @property
    def height(self) -> float:
        return float(self.landmarks68[8, 1] - self.landmarks68[19, 1])


def find_faces(img: np.ndarray, *, detector: str = "dlib-hog", upsample: int = 1,
               max_side: int = DETECT_MAX_SIDE) -> list[FoundFace]:
    """Every face of an RGB uint8 image with 68 landmarks in its pixels, largest (chin-to-brow) first. Large
    images are searched on a downscaled copy; landmarks are always regressed at full resolution."""
    from bfrcore.faces import detect_faces, landmarks68

    h, w = img.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    probe = img if scale == 1.0 else resize_to(img, (max(1, round(w * scale)), max(1, round(h * scale))))
    faces = detect_faces(probe, detector=detector, upsample=upsample, with_landmarks=False)
    out = []
    for f in faces:
        box = tuple(float(v) / scale for v in f.box)
        lm = f.landmarks68 if (scale == 1.0 and f.landmarks68 is not None) else landmarks68(img, box)
        out.append(FoundFace(box, float(f.score), np.asarray(lm, np.float32)))
    out.sort(key=lambda f: -f.height)
    return out


def resize_to(img: np.ndarray, wh: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize(wh, Image.Resampling.BILINEAR, reducing_gap=2.0))


def looks_aligned(img: np.ndarray, faces: list[FoundFace]) -> tuple[bool, str]:
    """The ``auto`` rule (module docstring): (is an aligned face, why)."""
    from bfrcore.faces import ffhq_quad

    h, w = img.shape[:2]
    if h != w:
        return False, f"not square ({w}x{h})"
    if not faces:
        if w <= AUTO_ALIGNED_MAX_SIDE:
            return True, "square, no face detected (taken as a degraded aligned face)"
        return False, f"square but {w} px > {AUTO_ALIGNED_MAX_SIDE} and no face detected"
    quad, side, _ = ffhq_quad(faces[0].landmarks68)
    ratio = side / w
    off = float(np.hypot(*(quad.mean(0) - (w - 1) / 2.0))) / w
    if 0.6 <= ratio <= 1.6 and off <= 0.15:
        return True, f"square, face square {ratio:.2f}x the image, centre offset {off:.2f}"
    return False, f"square, but the face square is {ratio:.2f}x the image (centre offset {off:.2f})"


# ------------------------------------------------------------------------------------------------ restorer
@dataclass
class PreparedFace:
    """An aligned face at the model size, ready for restore()."""

    image: np.ndarray  # (S, S, 3) uint8
    landmarks: np.ndarray  # (68, 2) float32, pixels of ``image``
    landmarks_source: str  # detected | mean_face
    transform: Any = None  # AlignTransform for faces cut out of a photo
    record: dict = field(default_factory=dict)


class FaceRestorer:
    """Restores aligned faces and whole photos with one model; holds the prepared references."""

    def __init__(self, model: RestorationModel, *, device: str | torch.device = "cpu", aligned: str = "auto",
                 detector: str = "dlib-hog", upsample: int = 1, feather: float = 0.08, margin: float = 8.0):
        if aligned not in ALIGNED_CHOICES:
            raise RestoreArgumentError(f"--aligned must be one of {ALIGNED_CHOICES}, got {aligned!r}")
        self.model = model.to(device).eval()
        self.device = device
        self.aligned = aligned
        self.detector = detector
        self.upsample = int(upsample)
        self.feather = float(feather)
        self.margin = float(margin)
        self.size = int(model.input_size)
        self.wants_landmarks = bool(model.needs_landmarks or model.uses_landmarks)
        self.refs: list[PreparedFace] = []
        self._refs_t = None

    # ----------------------------------------------------------------------------------- preparation
    def _aligned_face(self, img: np.ndarray, faces: list[FoundFace] | None) -> PreparedFace:
        from baselines.landmarks import clamp_to_image, mean_face_landmarks

        s = self.size
        face = resize_uint8(img, s)
        if faces is None and self.wants_landmarks:
            faces = find_faces(img, detector=self.detector, upsample=self.upsample)
        if faces:
            pts = faces[0].landmarks68 * np.float32(s / img.shape[1])
            source = "detected"
        elif not self.wants_landmarks:
            pts, source = mean_face_landmarks(s), "not used"
        else:
            pts = mean_face_landmarks(s)
            source = "mean_face"
        rec = {"faces_found": len(faces) if faces is not None else None, "landmarks_source": source}
        return PreparedFace(face, clamp_to_image(pts, (s, s), self.margin), source, None, rec)

    def _photo_face(self, img: np.ndarray, f: FoundFace) -> PreparedFace:
        from baselines.landmarks import clamp_to_image
        from bfrcore.faces import align_face

        crop, tf = align_face(img, f.landmarks68, self.size)
        pts = clamp_to_image(tf.to_aligned(f.landmarks68), (self.size, self.size), self.margin)
        rec = {"box": [round(v, 1) for v in f.box], "score": round(f.score, 3), "landmarks_source": "detected",
               "quad": [[round(float(v), 2) for v in c] for c in tf.quad],
               "upsample_factor": round(tf.upsample_factor, 3), "eye_distance_px": round(tf.eye_distance, 1),
               "padded_fraction": round(tf.padded_fraction, 3)}
        return PreparedFace(crop, pts, "detected", tf, rec)

    def classify(self, img: np.ndarray) -> tuple[bool, list[FoundFace] | None, str]:
        """(treat as aligned, faces found (None if detection was not needed), why)."""
        if self.aligned == "yes":
            return True, None, "--aligned yes"
        if self.aligned == "no":
            return False, find_faces(img, detector=self.detector, upsample=self.upsample), "--aligned no"
        faces = find_faces(img, detector=self.detector, upsample=self.upsample) if img.shape[0] == img.shape[1] \
            else None
        if faces is None:
            return False, None, f"auto: not square ({img.shape[1]}x{img.shape[0]})"
        ok, why = looks_aligned(img, faces)
        return ok, faces, f"auto: {why}"

    def add_references(self, files: list[Path], max_refs: int | None = None) -> list[dict]:
        """Prepare reference faces (aligned faces or photos: their largest face); returns a record per file."""
        records = []
        for f in files:
            rec: dict[str, Any] = {"file": f.name}
            if max_refs is not None and len(self.refs) >= max_refs:
                rec.update(status="skipped", reason=f"--max-refs {max_refs} reached")
                records.append(rec)
                continue
            try:
                img = read_image(f)
                is_aligned, faces, why = self._classify_ref(img)
                rec["kind"] = "aligned" if is_aligned else "photo"
                rec["aligned_decision"] = why
                if is_aligned:
                    p = self._aligned_face(img, faces)
                else:
                    if faces is None:
                        faces = find_faces(img, detector=self.detector, upsample=self.upsample)
                    if not faces:
                        rec.update(status="skipped", reason="no face found")
                        records.append(rec)
                        continue
                    p = self._photo_face(img, faces[0])
                    p.record["faces_found"] = len(faces)
                rec.update(status="ok", **p.record)
                self.refs.append(p)
            except ImageReadError as e:
                rec.update(status="skipped", reason=f"unreadable ({e.reason}): {e}")
            records.append(rec)
        return records

    def _ref_tensors(self) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """The references as restore() arguments, built once: the same tensor objects on every call, so a model
        that memoises its reference encoding (DMDNet) encodes them once for the whole folder."""
        if self._refs_t is None or self._refs_t[0] != len(self.refs):
            refs = [to_tensor([r.image for r in self.refs], self.device)]
            lms = [torch.from_numpy(np.stack([r.landmarks for r in self.refs])).to(self.device)] \
                if self.wants_landmarks else None
            self._refs_t = (len(self.refs), refs, lms)
        return self._refs_t[1], self._refs_t[2]

    def _classify_ref(self, img):
        saved, self.aligned = self.aligned, "auto"  # references: always decided per file
        try:
            return self.classify(img)
        finally:
            self.aligned = saved

    # ----------------------------------------------------------------------------------- restoration
    @torch.no_grad()
    def restore_faces(self, faces: list[PreparedFace]) -> list[np.ndarray]:
        """Restore prepared faces one by one (bounded memory); returns (S, S, 3) uint8 each."""
        m = self.model
        if m.needs_references and not self.refs:
            raise RestoreArgumentError(f"{m.model_name} needs reference images of the person (--refs)")
        refs = ref_lms = None
        if self.refs and (m.uses_references or m.needs_references):
            refs, ref_lms = self._ref_tensors()
        outs = []
        for p in faces:
            lq = to_tensor([p.image], self.device)
            lm = torch.from_numpy(p.landmarks[None]).to(self.device) if self.wants_landmarks else None
            out = m.restore(lq, landmarks=lm, refs=refs, ref_landmarks=ref_lms)
            if tuple(out.shape) != tuple(lq.shape):
                raise ValueError(f"model returned {tuple(out.shape)} for input {tuple(lq.shape)}")
            if not torch.isfinite(out).all():
                raise ValueError("model output contains NaN or inf")
            outs.append(to_uint8(out[0]))
        return outs

    def restore_image(self, img: np.ndarray) -> tuple[np.ndarray | None, list[tuple[np.ndarray, np.ndarray]], dict]:
        """Restore one decoded image. Returns (output image or None when skipped, [(input crop, restored crop)]
        for photos, record)."""
        is_aligned, faces, why = self.classify(img)
        rec: dict[str, Any] = {"kind": "aligned" if is_aligned else "photo", "aligned_decision": why,
                               "input_size": [int(img.shape[1]), int(img.shape[0])]}
        if is_aligned:
            p = self._aligned_face(img, faces)
            rec.update(p.record, faces_restored=1)
            out = self.restore_faces([p])[0]
            rec["output_size"] = [self.size, self.size]
            return out, [], rec
        if faces is None:
            faces = find_faces(img, detector=self.detector, upsample=self.upsample)
        rec["faces_found"] = len(faces)
        if not faces:
            rec.update(reason="no face found")
            return None, [], rec
        prepared = [self._photo_face(img, f) for f in faces]
        restored = self.restore_faces(prepared)
        out = img
        for p, r in reversed(list(zip(prepared, restored))):  # largest face last: it wins where faces overlap
            out, box = paste_back(out, r, p.transform, feather=self.feather)
            p.record["pasted_box"] = list(box)
        rec.update(faces_restored=len(prepared), landmarks_source="detected",
                   faces=[p.record for p in prepared], output_size=[int(img.shape[1]), int(img.shape[0])])
        return out, [(p.image, r) for p, r in zip(prepared, restored)], rec


# ------------------------------------------------------------------------------------------------ folders
def weights_info(model: RestorationModel) -> dict:
    """What the manifest says about the weights: name and sha256, or a loud 'random init' flag."""
    rec = model.weights_record
    if rec:
        return {"status": "loaded", "name": rec.get("name"), "sha256": rec.get("sha256"), "path": rec.get("path"),
                **{k: rec[k] for k in ("checkpoint_step", "missing_keys", "unexpected_keys") if k in rec}}
    if not is_untrained(model):
        return {"status": "none needed", "sha256": None, "note": f"{model.model_name} has no trainable weights"}
    return {"status": "random init", "sha256": None, "untrained": True, "warning": UNTRAINED_NOTE}


def restore_folder(model: str | RestorationModel, input: str | Path, out: str | Path, *,
                   refs: str | Path | None = None, weights: str | None = None, config: Any = None,
                   aligned: str = "auto", device: str = "cpu", seed: int = 0, detector: str = "dlib-hog",
                   upsample: int = 1, max_refs: int | None = None, feather: float = 0.08,
                   quiet: bool = False, allow_untrained: bool = False) -> dict:
    """Restore every image of ``input`` (a folder or one file) into ``out``; returns the manifest (also written to
    ``out/manifest.json``). ``model``: a registry name (built with ``config`` / ``weights``) or a model instance.

    Outputs: ``out/<stem>.png`` per input (restored aligned face, or the photo with its faces pasted back),
    ``out/faces/<stem>_NN.png`` (restored crop of face NN of a photo) and ``out/faces_input/<stem>_NN.png`` (its
    aligned input crop). Raises :class:`RestoreArgumentError` for bad arguments (missing input, unknown model, a
    model that needs references without usable ones, a trainable model without trained weights unless
    ``allow_untrained``); bad images are skipped and recorded."""
    t_start = time.time()
    input, out = Path(input), Path(out)
    if not input.exists():
        raise RestoreArgumentError(f"input {input} does not exist")
    if aligned not in ALIGNED_CHOICES:
        raise RestoreArgumentError(f"--aligned must be one of {ALIGNED_CHOICES}, got {aligned!r}")
    in_dir = input if input.is_dir() else input.parent
    if out.exists() and out.resolve() == in_dir.resolve():
        raise RestoreArgumentError(f"--out {out} is the input folder; choose another folder (outputs are PNGs "
                                   "named like the inputs)")
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    allocator = reuse_freed_memory() if torch.device(device).type == "cpu" else None
    if isinstance(model, str):
        from baselines import create_model

        name = model
        try:
            model = create_model(name, config=config, weights=weights, device=device, channels_last=True)
        except KeyError as e:
            raise RestoreArgumentError(str(e.args[0] if e.args else e)) from e
        except (ValueError, TypeError) as e:
            raise RestoreArgumentError(f"{name}: {e}") from e
    wrec = weights_info(model)
    if wrec["status"] == "random init":
        if not allow_untrained:
            raise RestoreArgumentError(untrained_error(model.model_name,
                                                       get_model_info(model.model_name).pretrained))
        log.warning("!" * 20 + " %s: %s " + "!" * 20, model.model_name, UNTRAINED_NOTE)
    restorer = FaceRestorer(model, device=device, aligned=aligned, detector=detector, upsample=upsample,
                            feather=feather)

    ref_records: list[dict] = []
    ref_note = None
    if refs is not None:
        ref_files, _ = list_images(Path(refs))
        if not (model.uses_references or model.needs_references):
            ref_note = f"{model.model_name} does not use references: --refs ignored"
            log.warning(ref_note)
        else:
            ref_records = restorer.add_references(ref_files, max_refs=max_refs)
            if not restorer.refs:
                raise RestoreArgumentError(f"--refs {refs}: no usable reference face among {len(ref_files)} file(s)"
                                           + "".join(f"\n  {r['file']}: {r.get('reason')}" for r in ref_records))
    if model.needs_references and not restorer.refs:
        raise RestoreArgumentError(f"{model.model_name} needs reference images of the person: pass --refs DIR")
    mode = "specific" if restorer.refs else "generic"

    files, ignored = list_images(input)
    names = output_names(files)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for f in progress(files, total=len(files), desc=f"restore {model.model_name}", quiet=quiet):
        t0 = time.time()
        rec: dict[str, Any] = {"file": f.name, "output": None}
        try:
            img = read_image(f)
            result, crops, info = restorer.restore_image(img)
            rec.update(info)
            if result is None:
                rec["status"] = "skipped"
            else:
                stem = Path(names[f]).stem
                write_png(out / names[f], result)
                rec["output"] = names[f]
                for k, (lq_crop, face) in enumerate(crops):
                    write_png(out / "faces" / f"{stem}_{k:02d}.png", face)
                    write_png(out / "faces_input" / f"{stem}_{k:02d}.png", lq_crop)
                    rec["faces"][k].update(crop=f"faces/{stem}_{k:02d}.png",
                                           input_crop=f"faces_input/{stem}_{k:02d}.png")
                rec["status"] = "ok"
        except ImageReadError as e:
            rec.update(status="skipped", reason=f"unreadable ({e.reason}): {e}")
        except RestoreArgumentError:
            raise
        except Exception as e:  # one bad image must not stop the folder
            log.debug("restore of %s failed", f, exc_info=True)
            rec.update(status="failed", reason=f"{type(e).__name__}: {e}")
        rec["seconds"] = round(time.time() - t0, 3)
        records.append(rec)

    n_ok = sum(r["status"] == "ok" for r in records)
    manifest = {
        "format": MANIFEST_FORMAT,
        "model": model.model_name,
        "model_config": model.config_dict(),
        "weights": wrec,
        "mode": mode,
        "device": str(device),
        **({"cpu_allocator": allocator} if allocator else {}),
        "seed": seed,
        "options": {"aligned": aligned, "detector": detector, "upsample": upsample, "feather": feather,
                    "model_size": restorer.size, "max_refs": max_refs},
        "input": str(input),
        "refs": None if refs is None else {"dir": str(refs), "used": len(restorer.refs), "files": ref_records,
                                           "note": ref_note},
        "counts": {"images": len(files), "ok": n_ok,
                   "skipped": sum(r["status"] == "skipped" for r in records),
                   "failed": sum(r["status"] == "failed" for r in records),
                   "faces_restored": sum(r.get("faces_restored", 0) for r in records if r["status"] == "ok")},
        "ignored_files": ignored,
        "images": records,
        "seconds": round(time.time() - t_start, 2),
    }
    if not files:
        manifest["note"] = f"no image files in {input}"
    write_bytes_atomic(out / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


__all__ = ["FaceRestorer", "face_mask", "find_faces", "list_images", "looks_aligned", "paste_back",
           "restore_folder", "weights_info"]
