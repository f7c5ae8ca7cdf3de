"""Identity embeddings of aligned faces, one interface for every backend.

``get_embedder(name)`` returns an :class:`Embedder` with ``embed(images) -> (N, D) float32``. Backends:

- ``dlib``: dlib ResNet-29, 128-D, compared with Euclidean distance (same person < 0.6).
- ``dlib-flip`` (the build's offline default): the same descriptor averaged over the face and its mirror image
  (two passes; measured to raise clustering precision and recall on unseen people, docs/build.md).
  On FFHQ-aligned input the face box is fixed (the mean dlib HOG box on aligned 512 faces, scaled), so embedding
  never depends on a detector succeeding on a degraded or restored face; the 5-point regressor places the chip.
- ``arcface`` (reporting default when present): InsightFace buffalo_l ArcFace R50 (w600k), 512-D, cosine.
- others register with :func:`register_embedder` (evaluation adds the GFPGAN/VQFR arcface_resnet18 recipe).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Sequence

import numpy as np

#: how the dlib embedders evaluate their network: dlib's own code (the reference), or the same weights run by
#: torch or onnxruntime (bfrcore.faces.dlib_resnet; within about 1e-6 of dlib's descriptors)
ENGINES = ("dlib", "torch", "onnx")

#: mean dlib HOG box (x1, y1, x2, y2) on FFHQ-aligned 512 faces, measured on 58 CelebRef-HQ/ASFFNet references
ALIGNED_FACE_BOX_512 = (96.0, 156.0, 406.0, 465.0)


class Embedder(ABC):
    """Identity embedding backend. ``metric`` is 'euclidean' or 'cosine' (how its authors compare vectors)."""

    name: str = ""
    dim: int = 0
    metric: str = "cosine"
    #: weights-registry names this backend needs (their sha256s go into manifests)
    weights: tuple[str, ...] = ()

    @abstractmethod
    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """``images``: FFHQ-aligned RGB uint8 (S, S, 3) faces. Returns (N, dim) float32."""

    def weights_records(self) -> list[dict]:
        from bfrcore import weights as wreg

        return [wreg.describe(n) for n in self.weights]


class DlibEmbedder(Embedder):
    name = "dlib"
    dim = 128
    metric = "euclidean"
    weights = ("dlib-shape-predictor-5", "dlib-resnet-face-v1")

    def __init__(self, num_jitters: int = 0, flip: bool = False, engine: str = "dlib", device: str = "cpu"):
        """``num_jitters``: dlib's jittered averaging (0 = one pass; each jitter is one more network pass; dlib
        engine only). ``flip``: average the descriptor of the face and of its mirror image (two passes).
        ``engine``: ``dlib`` (dlib's own network code, the reference), ``torch`` or ``onnx`` (the same network
        and weights run by torch / onnxruntime, :mod:`bfrcore.faces.dlib_resnet`: descriptors within about 1e-6 of
        dlib's; per 150x150 chip on one CPU core 80 ms with dlib, 10-18 ms with torch, 5.5-6.3 ms with onnxruntime;
        both run on ``device`` = ``cuda``, onnx with onnxruntime-gpu)."""
        from bfrcore.faces import dlib_models

        if engine not in ENGINES:
            raise ValueError(f"unknown embedding engine {engine!r}; choose from {ENGINES}")
        if engine != "dlib" and num_jitters:
            raise ValueError("num_jitters needs the dlib engine (dlib jitters the chips itself)")
        if engine == "dlib" and device != "cpu":
            raise ValueError(f"the dlib engine runs on the CPU only; use engine='torch' for device {device!r}")
        self._sp = dlib_models.shape_predictor_5()
        self._rec = dlib_models.face_recognizer() if engine == "dlib" else None
        if engine != "dlib":
            from bfrcore import weights as wreg

            self._weights_path = wreg.require("dlib-resnet-face-v1")
        self._rect = dlib_models.rectangle
        self.num_jitters = num_jitters
        self.flip = flip
        self.engine = engine
        self.device = device

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """One batched descriptor call for every face (and mirror image): the same values as one call per face
        (with dlib's engine bit for bit, with the ports to float rounding; tests/celebref/test_build_throughput.py),
        without a Python round trip per face."""
        from bfrcore.faces import dlib_models

        chips, shapes = [], []
        for img in images:
            img = np.ascontiguousarray(img)
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"expected RGB uint8 (S, S, 3), got {img.dtype} {img.shape}")
            views = [(img, False)] + ([(np.ascontiguousarray(img[:, ::-1]), True)] if self.flip else [])
            for view, mirrored in views:
                chips.append(view)
                shapes.append(dlib_models.full_object_detections([self._shape(view, mirrored)]))
        if not chips:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.engine != "dlib":
            from bfrcore.faces import dlib_resnet

            cut = [dlib_resnet.face_chips(view, shape)[0] for view, shape in zip(chips, shapes)]
            vecs = self._port_descriptors(cut)
        else:  # one descriptor per view (dlib returns a list per image, one entry per shape)
            vecs = np.stack([np.asarray(v[0], dtype=np.float32)
                             for v in self._rec.compute_face_descriptor(chips, shapes, self.num_jitters)])
        if not self.flip:
            return vecs
        return (vecs[0::2] + vecs[1::2]) / 2  # float32: (face + mirror) / 2

    def _port_descriptors(self, chips: list[np.ndarray]) -> np.ndarray:
        """Descriptors of 150x150 chips by the torch or onnx port of dlib's network."""
        from bfrcore.faces import dlib_resnet

        if self.engine == "onnx":
            return dlib_resnet.onnx_descriptors(dlib_resnet.onnx_session(self._weights_path, self.device), chips)
        return dlib_resnet.descriptors(dlib_resnet.model(self._weights_path, self.device), chips)

    def _shape(self, img: np.ndarray, mirrored: bool = False):
        """The 5-point shape inside the fixed aligned face box (mirrored with the image when ``mirrored``)."""
        s = img.shape[1] / 512.0
        x1, y1, x2, y2 = (v * s for v in ALIGNED_FACE_BOX_512)
        if mirrored:  # the fixed box mirrored with the image
            x1, x2 = img.shape[1] - x2, img.shape[1] - x1
        return self._sp(img, self._rect([x1, y1, x2, y2]))

    def _one(self, img: np.ndarray, mirrored: bool = False) -> np.ndarray:
        """The descriptor of one view by its own call (the reference the batched :meth:`embed` is tested against)."""
        shape = self._shape(img, mirrored)
        if self.engine != "dlib":
            from bfrcore.faces import dlib_models, dlib_resnet

            return self._port_descriptors(dlib_resnet.face_chips(img, dlib_models.full_object_detections([shape])))[0]
        return np.asarray(self._rec.compute_face_descriptor(img, shape, self.num_jitters), dtype=np.float32)


class ArcFaceInsightFace(Embedder):
    """InsightFace ArcFace R50 (buffalo_l w600k_r50.onnx) on the standard 112x112 5-point crop of the aligned face."""

    name = "arcface"
    dim = 512
    metric = "cosine"
    weights = ("insightface-buffalo_l",)

    def __init__(self, device: str = "cpu"):
        from insightface.model_zoo import get_model

        from bfrcore import weights as wreg

        pack = wreg.require("insightface-buffalo_l")
        providers, ctx = onnx_providers(device)
        self._model = get_model(str(pack / "w600k_r50.onnx"), providers=providers)
        self._model.prepare(ctx_id=ctx)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        from insightface.utils import face_align

        out = np.zeros((len(images), self.dim), dtype=np.float32)
        for i, img in enumerate(images):
            kps = _five_points_aligned(img)
            crop = face_align.norm_crop(np.ascontiguousarray(img[:, :, ::-1]), kps, image_size=112)
            out[i] = self._model.get_feat(crop).reshape(-1)
        return out


def onnx_providers(device: str) -> tuple[list[str], int]:
    """onnxruntime execution providers and InsightFace ``ctx_id`` for ``device`` (``cpu``, ``cuda``, ``cuda:N``);
    a CUDA device without onnxruntime's CUDA provider is an error naming the fix."""
    if device == "cpu":
        return ["CPUExecutionProvider"], -1
    if not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise ValueError(f"device {device!r}: onnxruntime has no CUDA provider here "
                         "(fix: pip install onnxruntime-gpu matching your CUDA)")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], index


def _five_points_aligned(img: np.ndarray) -> np.ndarray:
    """ArcFace's 5 points (eye centres, nose tip, mouth corners) from dlib's 68 points inside the fixed box."""
    from bfrcore.faces.detect import landmarks68

    s = img.shape[1] / 512.0
    lm = landmarks68(img, [v * s for v in ALIGNED_FACE_BOX_512])
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]]).astype(np.float32)


def _dlib_flip(engine: str = "dlib", device: str = "cpu") -> DlibEmbedder:
    e = DlibEmbedder(flip=True, engine=engine, device=device)
    e.name = "dlib-flip"
    return e


def _dlib(engine: str = "dlib", device: str = "cpu") -> DlibEmbedder:
    return DlibEmbedder(engine=engine, device=device)


def _arcface18() -> Embedder:
    """The ArcFace-18 embedder, imported on first use (the module imports torch; it re-registers itself)."""
    from bfrcore.faces.arcface18 import ArcFace18Embedder

    return ArcFace18Embedder()


_FACTORIES: dict[str, Callable[[], Embedder]] = {"dlib": _dlib, "dlib-flip": _dlib_flip,
                                                 "arcface": ArcFaceInsightFace, "arcface18": _arcface18}
_CACHE: dict[str, Embedder] = {}


def register_embedder(name: str, factory: Callable[[], Embedder]) -> None:
    _FACTORIES[name] = factory


def available_embedders() -> list[str]:
    return sorted(_FACTORIES)


def get_embedder(name: str = "dlib", *, engine: str = "dlib", device: str = "cpu") -> Embedder:
    """A cached embedder instance. Raises MissingWeightsError (with the fix) when its weights are absent.

    ``engine`` applies to the dlib embedders (``dlib``: dlib's own code; ``torch`` / ``onnx``: the ports); ``device``
    (``cpu``, ``cuda``, ``cuda:N``) to the torch engine and to ``arcface`` (onnxruntime's CUDA provider)."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown embedder {name!r}; choose from {available_embedders()}")
    key = f"{name}|{engine}|{device}"
    if key not in _CACHE:
        if name in ("dlib", "dlib-flip"):
            _CACHE[key] = _FACTORIES[name](engine=engine, device=device)
        elif name == "arcface":
            _CACHE[key] = ArcFaceInsightFace(device=device)
        elif device != "cpu":
            raise ValueError(f"embedder {name!r} runs on the CPU only here (asked for {device!r})")
        else:
            _CACHE[key] = _FACTORIES[name]()
    return _CACHE[key]


def pairwise_distance(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """(N, M) distances: Euclidean, or cosine distance 1 - cos."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if metric == "euclidean":
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
        return np.sqrt(np.maximum(d2, 0))
    if metric == "cosine":
        an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return 1.0 - an @ bn.T
    raise ValueError(f"unknown metric {metric!r}")
