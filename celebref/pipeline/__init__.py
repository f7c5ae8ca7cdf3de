"""`celebref build`: construct a CelebRef-HQ-style dataset (identity folders of FFHQ-aligned faces, manifest,
identity-disjoint splits, reference lists) from folders, archives, the CelebRef-HQ release, Hugging Face datasets
or crawled URL lists. See docs/build.md.

    from celebref.pipeline import build_dataset, load_config
    result = build_dataset(["photos/"], "out/", load_config("build.yaml"), workers=2)
"""

from celebref.pipeline.builder import BuildResult, build_dataset, load_truth
from celebref.pipeline.config import BuildConfig, ConfigError, load_config, parse_config

__all__ = ["BuildConfig", "BuildResult", "ConfigError", "build_dataset", "load_config", "load_truth", "parse_config"]
