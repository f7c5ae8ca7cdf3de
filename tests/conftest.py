"""Shared fixtures: access to ../shared/data (skipped with a reason when absent), tiny deterministic inputs,
a mini dataset folder built from the CelebRef-HQ examples, isolated caches."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # otherwise each Hub call spends ~23 s retrying
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("CELEBREF_PROGRESS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests import helpers  # noqa: E402


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` next to the project root; tests using it skip with a clear message when absent."""
    root = helpers.shared_data_root()
    if root is None:
        pytest.skip(f"real test photos not found: expected {helpers.SHARED_HINT} (see README, 'Test data')")
    return root


@pytest.fixture(scope="session")
def shared_faces(shared_data) -> Path:
    return shared_data / "faces"


@pytest.fixture(scope="session")
def celebref_examples(shared_faces) -> Path:
    """The five CelebRef-HQ identities (aligned 512 images) with their 68-point landmark files."""
    root = shared_faces / helpers.CELEBREF_EXAMPLES
    if not root.is_dir():
        pytest.skip(f"{root} missing")
    return root


@pytest.fixture(scope="session")
def mini_dataset(celebref_examples, tmp_path_factory) -> Path:
    """A DATASET folder (bfrcore.dataset format) made from the CelebRef-HQ examples: 5 identities, 49 images,
    landmarks from the authors' files; identities 00075, 00146 are the test split. Read-only for tests."""
    out = tmp_path_factory.mktemp("mini_dataset")
    return helpers.make_mini_dataset(celebref_examples, out)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def isolated_weights(tmp_path, monkeypatch) -> Path:
    """An empty weights cache and empty TORCH_HOME / insightface root, so nothing the user has leaks in."""
    cache = tmp_path / "weights"
    monkeypatch.setenv("CELEBREF_WEIGHTS_DIR", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("INSIGHTFACE_ROOT", str(tmp_path / "insightface"))
    return cache
