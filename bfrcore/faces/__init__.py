"""Face analysis owned by celebref and reused by evaluation and baselines: detection, 68-point landmarks,
FFHQ alignment, identity embeddings.

Importing this package does not import torch: the ``arcface18`` embedder (a torch network,
:mod:`bfrcore.faces.arcface18`) is registered by name and imported when first asked for, so that the build's
workers and the build's global stages do not pay torch's import for a distance function."""

from bfrcore.faces.align import AlignTransform, align_face, align_quad, ffhq_quad, realign
from bfrcore.faces.detect import DETECTORS, Face, detect_faces, detect_landmarks68, landmarks68
from bfrcore.faces.embed import (
    ALIGNED_FACE_BOX_512,
    Embedder,
    available_embedders,
    get_embedder,
    pairwise_distance,
    register_embedder,
)

__all__ = [
    "ALIGNED_FACE_BOX_512", "AlignTransform", "DETECTORS", "Embedder", "Face", "align_face", "align_quad",
    "available_embedders", "detect_faces", "detect_landmarks68", "ffhq_quad", "get_embedder", "landmarks68",
    "pairwise_distance", "realign", "register_embedder",
]
