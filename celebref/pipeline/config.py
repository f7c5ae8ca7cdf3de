"""`celebref build` configuration: typed frozen dataclasses, parsed once from YAML (or a dict) with validation.
The ``ingest`` and ``crawl`` sections are defined next to the code that reads them (:mod:`celebref.ingest.config`).

Unknown keys are an error (a misspelled threshold must never silently fall back to its default). Every key, its
default and its meaning is listed in docs/build.md ("Config reference"); ``default_config_yaml()`` prints them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from bfrcore import errors
from bfrcore.typed_config import parse_dataclass, read_yaml_mapping, set_dotted, to_plain
from celebref.ingest.config import CrawlConfig, IngestConfig


class ConfigError(errors.ConfigError):
    """Invalid build configuration (unknown key, wrong type, out-of-range value); the CLI exits 2."""


@dataclass(frozen=True)
class FacesConfig:
    #: dlib-hog (offline default), dlib-cnn, mtcnn, insightface (needs its weights) or 'auto' (insightface when
    #: present, else dlib-hog)
    detector: Literal["auto", "dlib-hog", "dlib-cnn", "mtcnn", "insightface"] = "dlib-hog"
    #: detector upsampling: an int, or 'auto' = 1 for images up to auto_upsample_max_side px, else 0. HOG finds
    #: faces >= ~80 px at 0 (eye distance >= ~33 px, below quality.min_eye_distance), so upsampling mostly finds
    #: faces that are then rejected as low_face_resolution, at 3x the detection time (measured: docs/build.md)
    upsample: Union[int, Literal["auto"]] = "auto"
    auto_upsample_max_side: int = 400
    #: drop detections below this detector score (None: keep all)
    min_score: Optional[float] = None
    #: at most this many faces per photo (largest first); the rest are recorded as too_many_faces
    max_faces: int = 32
    #: output side and the FFHQ quad render size (None: 2*size, the DMDNet/ASFFNet authors' -o 512 -t 1024)
    size: int = 512
    transform_size: Optional[int] = None
    padding: Literal["reflect", "none"] = "reflect"
    #: aligned sources (CelebRef-HQ layout): kept as they are when their FFHQ quad is within this relative
    #: tolerance of the frame (centre offset and side, as a fraction of the side); else re-aligned
    aligned_tolerance: float = 0.12


@dataclass(frozen=True)
class IdentityConfig:
    #: dlib-flip (offline default: dlib 128-D, Euclidean, averaged over the face and its mirror image), dlib (one
    #: pass, half the time), arcface (InsightFace, cosine) or 'auto' (arcface when present, else dlib-flip)
    embedder: Literal["auto", "dlib", "dlib-flip", "arcface"] = "dlib-flip"
    #: how the dlib embedders run their network: onnx or torch (the same weights run by onnxruntime / torch,
    #: bfrcore.faces.dlib_resnet: descriptors within about 1e-6 of dlib's own, 13x / 4-8x faster per CPU core), dlib
    #: (dlib's own code), or auto (onnx on the CPU: no torch import in the workers; torch on a GPU)
    engine: Literal["auto", "onnx", "torch", "dlib"] = "auto"
    #: agglomerative (scipy hierarchical clustering) or chinese_whispers (dlib's graph clustering)
    algorithm: Literal["agglomerative", "chinese_whispers"] = "agglomerative"
    linkage: Literal["average", "complete", "single"] = "average"
    #: cut distance (None: per-embedder default, see identity.DEFAULT_THRESHOLDS)
    threshold: Optional[float] = None
    #: identities with fewer kept images are dropped
    min_images: int = 3
    #: weak name labels: 'majority' (a name's majority cluster is that person, its other faces are outliers),
    #: 'ignore' (clusters only)
    name_policy: Literal["majority", "ignore"] = "majority"
    #: when one cluster is the majority cluster of several names: 'merge' them (aliases) or 'split' by name
    shared_cluster: Literal["merge", "split"] = "merge"
    #: neighbour search for clustering: 'exact' (all pairs, O(n^2) memory), 'faiss' (approximate k-nearest-
    #: neighbour graph, the same algorithm run on its edges), 'auto' (faiss above faiss_min_faces faces)
    neighbors: Literal["auto", "exact", "faiss"] = "auto"
    faiss_min_faces: int = 20000
    #: neighbours per face in the faiss graph, and the index: 'hnsw' (IndexHNSWFlat) or 'flat' (exact kNN)
    knn_k: int = 48
    faiss_index: Literal["hnsw", "flat"] = "hnsw"
    #: within-name subgroup test for label noise the clustering misses (opt-in; see docs/build.md): inside each
    #: name's identity, average-linkage subgroups (cut subgroup_cut) of 2+ faces and at most a third of the name
    #: whose mean distance to the rest is >= subgroup_min_link and exceeds both groups' internal mean distance by
    #: >= subgroup_margin are flagged name_outlier. Distances in the embedder's metric; the defaults are calibrated
    #: on embedder 'dlib' (one pass): with 'dlib-flip' a genuine pair of the shared faces reaches margin 0.074
    name_subgroups: bool = False
    subgroup_cut: float = 0.45
    subgroup_margin: float = 0.065
    subgroup_min_link: float = 0.48
    subgroup_min_faces: int = 6
    #: faces of a name closer than this are one photo in the subgroup test (near-duplicates: two crops of one photo
    #: are 0.109 apart in the shared faces, distinct photos of one person >= 0.236; see docs/build.md); 0: off
    subgroup_dup_distance: float = 0.17
    #: purity check (null: off, measured not to pay on unseen people, docs/build.md): a cluster of >= split_min_size
    #: faces whose two average-linkage halves (2+ faces each) are farther apart, on average, than either half's
    #: internal mean distance by >= split_margin is split in two (and each half checked again)
    split_margin: Optional[float] = None
    split_min_size: int = 4
    #: confident core (null: off, measured not to pay): a member of a cluster of 2+ faces whose distance to its own
    #: cluster's centre is not smaller, by >= core_margin, than to another cluster's centre is dropped as
    #: identity/identity_uncertain
    core_margin: Optional[float] = None


@dataclass(frozen=True)
class QualityConfig:
    """Each threshold may be null to switch that check off. Scores are always recorded."""

    #: eye-centre distance of the face in the source photo (px)
    min_eye_distance: Optional[float] = 40.0
    #: variance of the Laplacian of the grey aligned face region, at 512 px
    min_sharpness: Optional[float] = 30.0
    #: halftone/speckle noise: mean |grey - median5| of the face region / sqrt(sharpness)
    max_noise_ratio: Optional[float] = 0.28
    #: NIQE (BasicSR convention, Y channel) of the aligned face; lower is better. Needs bfrcore.metrics.niqe and the
    #: niqe-basicsr params (else recorded as unavailable). No threshold by default; 6.5 separates native HQ from
    #: real LQ on the shared data but also rejects most upsampled in-the-wild crops (docs/build.md)
    niqe: bool = True
    max_niqe: Optional[float] = None
    #: mean luma (0-255) of the face region, and the share of clipped (<=4 or >=251) face pixels
    min_brightness: Optional[float] = 40.0
    max_brightness: Optional[float] = 225.0
    max_clipped: Optional[float] = 0.25
    #: mean chroma (CIELAB a*b* radius) of the whole aligned crop below this = greyscale
    min_chroma: Optional[float] = 4.0
    #: sepia / toned print: share of the colour variance explained by lightness above this while the chroma is
    #: below sepia_max_chroma
    max_tone_r2: Optional[float] = 0.88
    sepia_max_chroma: float = 15.0
    #: JPEG: estimated IJG quality of the source file (JPEG sources) and 8x8 blockiness of the source face region
    min_jpeg_quality: Optional[float] = 50.0
    max_blockiness: Optional[float] = 1.8
    #: head pose from the 68 landmarks (degrees)
    max_abs_yaw: Optional[float] = 50.0
    max_abs_roll: Optional[float] = 45.0
    #: share of the aligned crop that lies outside the source photo (filled by FFHQ mirror padding)
    max_padded_fraction: Optional[float] = 0.25


@dataclass(frozen=True)
class DedupConfig:
    enabled: bool = True
    #: near-duplicates within an identity: 64-bit DCT perceptual hash Hamming distance ...
    phash_max_distance: int = 10
    #: ... and identity-embedding distance (same metric as clustering) both at most these
    embedding_max_distance: float = 0.3


@dataclass(frozen=True)
class SplitsConfig:
    #: "identity": identity-disjoint train/test (the benchmark protocol); "image": a share of each person's images is
    #: held out and the rest train (the personal-album protocol: the model may have seen the person; references of a
    #: test image are that person's other images from any split); identities with one image stay in train
    mode: Literal["identity", "image"] = "identity"
    #: share of identities (mode identity) or of each identity's images (mode image) in the test split
    test_fraction: float = 0.1
    #: references per test image (other kept images of the same person, nearest in embedding first); None = all
    max_refs: Optional[int] = None
    #: images per test identity marked generic_test (a generic, reference-free test subset)
    generic_per_identity: int = 1


@dataclass(frozen=True)
class OutputConfig:
    #: zlib level of the aligned PNG crops (lossless at any level; part of the faces key). 1 encodes a 512 crop in
    #: ~0.05 s vs ~0.25 s at 6, for files ~8% larger (measured: docs/build.md)
    png_compress_level: int = 1
    report: bool = True
    report_max_identities: int = 200
    report_examples_per_reason: int = 8


@dataclass(frozen=True)
class RunnerConfig:
    #: items per shard (the unit of work handed to a worker and the unit of the stats/commit files); 'auto' = 8, or
    #: fewer when a stage has too few items to give every worker 4 shards (keeps every worker busy to the end of a
    #: small build; see runner.shard_size_for)
    shard_size: Union[int, Literal["auto"]] = "auto"
    #: attempts after the first for a shard whose worker died or raised (then recorded as failed; rerun retries)
    retries: int = 2
    #: compute the embed and quality stages in the faces pass, on the crop still in memory (one decode, no barrier
    #: between the stages; the same records and caches as three separate passes). false: three passes
    fuse: bool = True
    #: where the torch parts of the per-image stages run: auto (cuda when torch sees a GPU), cpu, cuda or cuda:N
    #: (the torch embedding engine, the MTCNN / InsightFace detectors, ArcFace through onnxruntime's CUDA
    #: provider); dlib's HOG detector, the 68-point regressor and the quality scores always run on the CPU.
    #: `celebref build --device` sets it
    device: str = "auto"


@dataclass(frozen=True)
class BuildConfig:
    seed: int = 0
    ingest: IngestConfig = field(default_factory=IngestConfig)
    crawl: CrawlConfig = field(default_factory=CrawlConfig)
    faces: FacesConfig = field(default_factory=FacesConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    splits: SplitsConfig = field(default_factory=SplitsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)

    def to_dict(self) -> dict:
        return to_plain(self)

    def replace(self, **sections) -> "BuildConfig":
        return dataclasses.replace(self, **sections)


# ------------------------------------------------------------------------------------------------ parsing
def config_hash(obj: Any) -> str:
    """Stable sha256 of a config section (or any plain value)."""
    return hashlib.sha256(json.dumps(to_plain(obj), sort_keys=True, default=str).encode()).hexdigest()


def _validate(cfg: BuildConfig) -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    need(cfg.faces.size >= 16, "faces.size must be >= 16")
    need(cfg.faces.transform_size is None or cfg.faces.transform_size >= cfg.faces.size,
         "faces.transform_size must be >= faces.size")
    need(cfg.faces.upsample == "auto" or 0 <= int(cfg.faces.upsample) <= 3, "faces.upsample must be 0..3 or 'auto'")
    need(cfg.faces.max_faces >= 1, "faces.max_faces must be >= 1")
    need(cfg.identity.min_images >= 1, "identity.min_images must be >= 1")
    need(cfg.identity.threshold is None or cfg.identity.threshold > 0, "identity.threshold must be > 0")
    need(0.0 <= cfg.splits.test_fraction < 1.0, "splits.test_fraction must be in [0, 1)")
    need(cfg.splits.max_refs is None or cfg.splits.max_refs >= 1, "splits.max_refs must be >= 1 or null")
    need(cfg.crawl.concurrency >= 1 and cfg.crawl.per_host_concurrency >= 1, "crawl concurrency must be >= 1")
    need(cfg.crawl.per_host_rate > 0, "crawl.per_host_rate must be > 0")
    need(cfg.crawl.timeout_s > 0 and cfg.crawl.total_timeout_s > 0, "crawl timeouts must be > 0")
    need(cfg.crawl.deadline_s is None or cfg.crawl.deadline_s > 0, "crawl.deadline_s must be > 0 or null")
    need(cfg.crawl.retries >= 0, "crawl.retries must be >= 0")
    need(cfg.runner.shard_size == "auto" or int(cfg.runner.shard_size) >= 1, "runner.shard_size must be >= 1 or 'auto'")
    need(cfg.runner.retries >= 0, "runner.retries must be >= 0")
    need(re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(cfg.runner.device)) is not None,
         f"runner.device must be auto, cpu, cuda or cuda:N, got {cfg.runner.device!r}")
    need(cfg.runner.device in ("cpu", "auto") or cfg.identity.embedder == "arcface" or cfg.identity.engine != "dlib",
         "runner.device cuda needs identity.engine auto, torch or onnx (dlib's own network code is CPU-only)")
    need(cfg.identity.knn_k >= 2, "identity.knn_k must be >= 2")
    need(cfg.identity.split_margin is None or cfg.identity.split_margin >= 0, "identity.split_margin must be >= 0")
    need(cfg.identity.split_min_size >= 4, "identity.split_min_size must be >= 4")
    need(cfg.identity.core_margin is None or cfg.identity.core_margin >= 0, "identity.core_margin must be >= 0")
    need(cfg.identity.faiss_min_faces >= 2, "identity.faiss_min_faces must be >= 2")
    need(0 <= cfg.output.png_compress_level <= 9, "output.png_compress_level must be 0..9")
    need(all(e == e.lower().lstrip(".") for e in cfg.ingest.extensions),
         "ingest.extensions: lower-case, without the dot")


def parse_config(data: dict | None) -> BuildConfig:
    """A validated :class:`BuildConfig` from a plain mapping (e.g. parsed YAML). Raises :class:`ConfigError`."""
    cfg = parse_dataclass(BuildConfig, data or {}, "", ConfigError)
    _validate(cfg)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> BuildConfig:
    """Read a YAML config (None: defaults) and apply ``section.key=value`` overrides (values parsed as YAML)."""
    data = {} if path is None else read_yaml_mapping(path, "build config", ConfigError, empty_ok=True)
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r}: expected section.key=value")
        key, raw = ov.split("=", 1)
        set_dotted(data, key, yaml.safe_load(raw), ConfigError)
    return parse_config(data)


def default_config_yaml() -> str:
    return yaml.safe_dump(BuildConfig().to_dict(), sort_keys=False)
