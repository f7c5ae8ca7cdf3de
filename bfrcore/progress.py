"""Progress bars: the one place they are set up (tqdm on stderr, short-lived).

Disabled by ``quiet`` (``-q``) or by the environment variable ``CELEBREF_PROGRESS=0``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

ENV_SWITCH = "CELEBREF_PROGRESS"


def enabled(quiet: bool = False) -> bool:
    """Whether progress bars are shown."""
    return not quiet and os.environ.get(ENV_SWITCH, "1") != "0"


def progress(iterable: Iterable, *, total: int | None = None, desc: str = "", quiet: bool = False):
    """Wrap ``iterable`` in a progress bar (a no-op bar when disabled)."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled(quiet), dynamic_ncols=True, leave=False)


def bar_factory(quiet: bool = False) -> Callable[..., object] | None:
    """``make(total, desc) -> bar`` for work counted by hand (``bar.update(n)``, ``bar.close()``), or None when
    progress bars are disabled."""
    if not enabled(quiet):
        return None
    from tqdm import tqdm

    def make(total: int, desc: str):
        return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

    return make
