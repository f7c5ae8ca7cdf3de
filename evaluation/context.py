"""The run context of ``bench evaluate`` and ``bench score``: everything one scoring run needs, built once.

A scoring run is one (model or prediction folder) x one test set x one mode. Its :class:`EvalContext` holds the
test set (and through it the dataset), the images to score, the mode, the :class:`~evaluation.scorer.Scorer`, the
output folder (:class:`bfrcore.results.ResultRun`), the summary header, the :class:`RunOptions` and an
:class:`~evaluation.image_cache.ImageCache` of dataset images. Where the restored images come from is the
context's :class:`PredictionSource`: a model restoring the LQ inputs (:class:`evaluation.runner.RestoredImages`)
or files written by another method (:class:`evaluation.score.PredictionFiles`). The one scoring loop over a
context is :mod:`evaluation.scoring`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bfrcore.safepath import safe_component
from evaluation.image_cache import ImageCache
from evaluation.summary import BootstrapSpec

if TYPE_CHECKING:
    from bfrcore.dataset import FaceDataset
    from bfrcore.results import ResultRun
    from bfrcore.testset import TestSet
    from evaluation.metrics import MetricOptions
    from evaluation.scorer import Scorer

#: ``(content key, loader)``: an image of a distribution metric's set; the key names its pixels (feature cache)
SetItem = tuple[str, Callable[[], np.ndarray]]


@dataclass(frozen=True)
class RunOptions:
    """How a run works (not what it scores). ``batch_size`` >= 1 images per step (restored and scored together);
    ``max_refs``: at most this many references per image (None: all); ``on_image(mode, image_id, row)`` is called
    after each recorded image (tests use it to interrupt a run)."""

    device: str = "cpu"
    batch_size: int = 1
    max_refs: int | None = None
    bootstrap: BootstrapSpec = field(default_factory=BootstrapSpec)
    quiet: bool = False
    on_image: Callable[[str, str, dict], None] | None = None


class PredictionSource(ABC):
    """Where a run's restored images come from. The scoring loop (:mod:`evaluation.scoring`) asks it which images
    still need work, for the (restored, GT) pairs of a batch, and for the images of the distribution metrics."""

    #: label of the progress bar
    desc: str = "score"
    #: references are scored at this size (px, square; their cache ids get ``@size``), None: as stored
    ref_size: int | None = None
    #: ``n_refs`` of a row before :meth:`load` fills it: 0 for a model run (no references unless specific mode),
    #: None when unknown (another method's files)
    initial_n_refs: int | None = None

    def pending(self, ctx: EvalContext, image_id: str) -> bool:
        """True when the image must be (re)scored: it has no ok row with every requested column."""
        return not ctx.run.is_complete(image_id, ctx.scorer.columns)

    @abstractmethod
    def load(self, ctx: EvalContext, ids: list[str], rows: dict[str, dict]) -> dict[str, tuple]:
        """``{image_id: (restored, gt)}`` (RGB uint8 arrays of one size) for the images of ``ids`` that can be
        scored; for the others set ``status='failed'`` and the ``reason`` in ``rows[image_id]``. May also fill
        ``landmarks_source`` and ``n_refs``."""

    @abstractmethod
    def pred_item(self, ctx: EvalContext, image_id: str) -> SetItem:
        """The restored image of a scored ``image_id`` for the distribution metrics."""

    @abstractmethod
    def gt_item(self, ctx: EvalContext, image_id: str) -> SetItem:
        """The ground truth of a scored ``image_id`` for the distribution metrics."""


@dataclass
class EvalContext:
    """One scoring run: (model or predictions) x test set x mode. ``header``: the first keys of summary.json
    (model, weights, mode, test set, ...); ``started``: ``time.time()`` when the run began (summary ``seconds``)."""

    testset: TestSet
    image_ids: list[str]
    mode: str
    scorer: Scorer
    run: ResultRun
    source: PredictionSource
    header: dict
    options: RunOptions
    started: float
    images: ImageCache = field(default=None)  # type: ignore[assignment]  # default: the dataset's images

    def __post_init__(self) -> None:
        if self.images is None:
            self.images = ImageCache(self.dataset.read)

    @property
    def dataset(self) -> FaceDataset:
        return self.testset.dataset

    def references(self, image_id: str) -> list[str]:
        """The reference image ids of ``image_id`` (at most ``options.max_refs``, present in the dataset)."""
        return references_for(self.dataset, image_id, self.options.max_refs)


# ----------------------------------------------------------------------------------------------- building one
def open_testset(path: str | os.PathLike, *, dataset_root: str | os.PathLike | None = None,
                 verify: bool = True) -> tuple[TestSet, dict]:
    """Load a test set and its dataset, and check its LQ files (:func:`bfrcore.testset_verify.require_verified`).
    Returns the test set and the summary record ``{"testset_verified": bool}``. Raises
    :class:`bfrcore.testset.TestSetError` / :class:`bfrcore.testset_verify.TestsetMismatchError` (input errors)."""
    from bfrcore.testset import TestSet
    from bfrcore.testset_verify import require_verified

    ts = TestSet.load(path, dataset_root=dataset_root)
    ts.dataset  # noqa: B018 - the dataset is loaded (and checked) now, not halfway through the run
    return ts, require_verified(ts.root, verify=verify)


def references_for(ds: FaceDataset, image_id: str, max_refs: int | None) -> list[str]:
    """The dataset's references of ``image_id`` (at most ``max_refs``) that are images of the dataset."""
    return [r for r in ds.references_of(image_id, max_refs) if r in ds.images.index]


def testset_header(ts: TestSet) -> dict:
    """summary.json ``testset``: name, hash, absolute path, preset (name, version, severity), dataset hash."""
    return {
        "name": ts.name, "hash": ts.hash, "path": str(Path(ts.root).resolve()), "preset": ts.preset_name,
        "preset_version": ts.preset_version, "severity": ts.severity, "dataset_hash": ts.dataset_hash,
    }


def results_dir(out: str | os.PathLike, label: str, testset_name: str, mode: str) -> Path:
    """``<out>/<label>/<test set name>/<mode>`` (label and mode already safe path components)."""
    return Path(out) / label / safe_component(testset_name, "test set name") / mode


def metric_settings(options: MetricOptions, protocol: dict | None) -> dict:
    """The part of a results folder's run key (``.run.json``) that names how the metrics were computed."""
    key = {"metric_options": {k: v for k, v in vars(options).items() if k not in ("batch_size", "cache_dir")}}
    if protocol:
        key["protocol"] = protocol.get("sha256")
    return key


def dataset_image_key(ds: FaceDataset, image_id: str) -> str:
    """The content hash of a dataset image: the manifest's ``sha256``, else the file's (distribution metrics)."""
    from bfrcore.imageio import file_sha256

    sha = ds.images.at[image_id, "sha256"] if "sha256" in ds.images.columns else None
    if not isinstance(sha, str) or not sha:
        sha = file_sha256(ds.image_path(image_id))
    return sha
