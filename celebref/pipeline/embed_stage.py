"""Stage 3a, identity embeddings of the aligned faces (per item, cached).

Backends come from :func:`bfrcore.faces.get_embedder`: ``dlib-flip`` (offline default: dlib ResNet-29, 128-D,
Euclidean, averaged over the face and its mirror image; its network run by torch by default, ``identity.engine``),
``dlib`` (one pass; the face box is the fixed
FFHQ-aligned box, so embedding never depends on re-detection) or ``arcface`` (InsightFace buffalo_l w600k R50,
512-D, cosine) when its weights are present; ``auto`` picks arcface when present, else dlib-flip.
"""

from __future__ import annotations

from dataclasses import dataclass

VERSION = "1"


@dataclass(frozen=True)
class EmbedParams:
    embedder: str
    #: the dlib embedders' engine (``torch`` or ``dlib``); ``-`` for the others
    engine: str = "dlib"
    #: where the network runs (``cpu``, ``cuda``, ``cuda:N``)
    device: str = "cpu"


def embed_params(embedder: str, engine: str, device: str) -> EmbedParams:
    """The stage's parameters: the engine only where it applies (the dlib embedders; ``auto`` = onnx on the CPU,
    torch on a GPU), so that the cache key names what computed the vectors."""
    if embedder not in ("dlib", "dlib-flip"):
        return EmbedParams(embedder, "-", device)
    if engine == "auto":
        engine = "onnx" if device == "cpu" else "torch"
    return EmbedParams(embedder, engine, device)


def resolve_embedder(name: str) -> str:
    if name != "auto":
        return name
    from bfrcore import weights

    return "arcface" if weights.locate("insightface-buffalo_l") is not None else "dlib-flip"


def embed_item(item: dict, params: EmbedParams) -> tuple[dict | None, str | None]:
    from bfrcore.faces import get_embedder
    from celebref.pipeline.faces_stage import crop_pixels

    emb = get_embedder(params.embedder, engine=params.engine if params.engine != "-" else "dlib",
                       device=params.device)
    faces = item["faces"]
    if not faces:
        return {"embeddings": {}}, None
    vecs = emb.embed([crop_pixels(f) for f in faces])
    return {"embeddings": {f["face_id"]: [float(v) for v in vec] for f, vec in zip(faces, vecs)},
            "metric": emb.metric, "dim": emb.dim}, None
