"""Configuration of the ingest stage: the ``ingest`` and ``crawl`` sections of the build config (typed frozen
dataclasses; parsed and validated with the rest of it by :func:`celebref.pipeline.config.parse_config`).

Kept here, below the pipeline, so that :mod:`celebref.ingest` never imports :mod:`celebref.pipeline`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Protocol

IMAGE_EXTENSIONS = ("jpg", "jpeg", "jfif", "png", "webp", "bmp", "tif", "tiff", "gif")


@dataclass(frozen=True)
class IngestConfig:
    #: image files larger than this are rejected at ingest (bytes)
    max_bytes: int = 50 * 1024 * 1024
    #: decoded images with more pixels than this are rejected (decompression-bomb guard)
    max_pixels: int = 100_000_000
    #: file extensions read from folders and archives (others are ignored, counted in build.json)
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS
    #: weak name label of a folder/archive photo: 'first_dir' (<name>/.../photo), 'parent_dir', or 'none'
    name_from: Literal["first_dir", "parent_dir", "none"] = "first_dir"
    #: Hugging Face source: split, image column (None: first Image feature), name column (None: auto)
    hf_split: str = "train"
    hf_image_column: Optional[str] = None
    hf_name_column: Optional[str] = None


@dataclass(frozen=True)
class CrawlConfig:
    #: downloads in flight at once (threads)
    concurrency: int = 8
    #: at most this many requests in flight to one host
    per_host_concurrency: int = 2
    #: at most this many requests started per second per host (token spacing 1/rate)
    per_host_rate: float = 2.0
    #: longest wait for one network step (lookup, connect, next bytes), and the most one URL may take, all
    #: attempts and backoffs included (seconds)
    timeout_s: float = 15.0
    total_timeout_s: float = 60.0
    #: attempts after the first for timeouts, connection errors, 429 and 5xx (exponential backoff)
    retries: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    #: refuse bodies larger than this (Content-Length checked first, then while streaming)
    max_bytes: int = 20 * 1024 * 1024
    #: accepted Content-Type prefixes
    content_types: tuple[str, ...] = ("image/",)
    #: obey robots.txt (urllib.robotparser); unreachable/5xx robots.txt = disallow, 404 = allow
    respect_robots: bool = True
    user_agent: str = "celebref-build/0.1 (+https://github.com/celebref; research dataset builder)"
    #: retry URLs that failed in an earlier run (by default a recorded failure is final; resume skips it)
    retry_failed: bool = False
    #: time limit of the whole crawl of one URL list (seconds; None: none). URLs not done by then are reported as
    #: crawl_deadline and not recorded, so a rerun fetches them
    deadline_s: Optional[float] = None


class SourcesConfig(Protocol):
    """What :func:`celebref.ingest.ingest_sources` reads of a build config (a ``BuildConfig`` has both)."""

    ingest: IngestConfig
    crawl: CrawlConfig
