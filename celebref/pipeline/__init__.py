"""`celebref build`: construct a CelebRef-HQ-style dataset (identity folders of FFHQ-aligned faces, manifest,
identity-disjoint splits, reference lists) from folders, archives, the CelebRef-HQ release, Hugging Face datasets
or crawled URL lists. See docs/build.md.

    from celebref.pipeline import build_dataset, load_config
    result = build_dataset(["photos/"], "out/", load_config("build.yaml"), workers=2)

The names below are imported on first use, so that a build worker importing a stage module
(``celebref.pipeline.faces_stage``) does not import the orchestration and pandas with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from celebref.pipeline.builder import BuildResult, build_dataset, load_truth
    from celebref.pipeline.config import BuildConfig, ConfigError, load_config, parse_config

_LAZY = {"BuildResult": "builder", "build_dataset": "builder", "load_truth": "builder", "BuildConfig": "config",
         "ConfigError": "config", "load_config": "config", "parse_config": "config"}

__all__ = ["BuildConfig", "BuildResult", "ConfigError", "build_dataset", "load_config", "load_truth", "parse_config"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"celebref.pipeline.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'celebref.pipeline' has no attribute {name!r}")
