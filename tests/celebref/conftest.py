"""Fixtures shared by the build tests: the small mixed build (see tests/celebref/build_support.py)."""

from __future__ import annotations

import pytest

from tests.celebref import build_support


@pytest.fixture(scope="session")
def small_sources(celebref_examples, shared_faces, tmp_path_factory) -> list[str]:
    return build_support.small_sources(celebref_examples, shared_faces, tmp_path_factory)


@pytest.fixture(scope="session")
def small_built(small_sources, tmp_path_factory):
    """The small build, local executor, 2 workers. Read-only: tests copy it before changing anything."""
    return build_support.small_local_build(small_sources, tmp_path_factory)
