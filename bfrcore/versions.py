"""Version stamps for manifests: one place that asks installed distributions for their versions.

Every artefact (build.json, testset.json, summary.json, checkpoints, dictionaries) records the versions it was
made with; each keeps its own list of packages, but they are all read here.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version

SUITE_DISTRIBUTION = "celebref-suite"


def package_version(name: str, missing: str | None = None) -> str | None:
    """The installed version of distribution ``name`` (PyPI name), or ``missing`` when it is not installed."""
    try:
        return version(name)
    except PackageNotFoundError:
        return missing


def suite_version(missing: str | None = None) -> str | None:
    """This suite's installed version (``missing`` when run from a source tree that is not installed)."""
    return package_version(SUITE_DISTRIBUTION, missing)


def package_versions(names: Iterable[str], *, missing: str | None = None, skip_missing: bool = False,
                     python: bool = False) -> dict[str, str | None]:
    """``{name: version}`` for ``names`` in order; absent ones get ``missing`` or are left out (``skip_missing``).
    ``python=True`` adds ``"python": platform.python_version()`` first."""
    out: dict[str, str | None] = {"python": platform.python_version()} if python else {}
    for name in names:
        v = package_version(name, missing)
        if v is None and skip_missing:
            continue
        out[name] = v
    return out
