"""Content checks of weights files: what a pretrained file must contain, checked before it is installed when no
upstream hash exists.

Nine registry entries have no published sha256 (Google-Drive releases, GitHub assets without checksums). For those
``bench weights import`` / ``fetch`` cannot compare a digest, so they check the *content* instead: a PyTorch
checkpoint is opened with ``torch.load(weights_only=True)`` on CPU (memory-mapped where the file allows, so a
600 MB checkpoint costs its metadata only), the usual containers are unwrapped exactly as the model's loader does,
and its keys and tensor shapes must equal the architecture it is for. Arrays (``.npz``, ``.mat``, ``.npy``
folders) must hold the named arrays with the expected shapes. A file that fails is never installed.

This module is the kernel half: the table of checks (:func:`register_content_check`, :func:`check`) and the
helpers the checks use. Each check is named in its registry entry (``WeightsEntry.content``) and registered, with
the description ``bench weights list`` shows under "verified by", by the package that owns the architecture:
:mod:`baselines.weights_checks` (restoration models, DFDNet dictionary), :mod:`evaluation.weights_checks` (metric
networks and statistics) and this module (ArcFace-18 of :mod:`bfrcore.faces.arcface18`). Importing ``baselines``
or ``evaluation`` registers theirs, and ``bench weights`` imports both before installing anything; an entry whose
check is not registered is refused, never installed unchecked. Checks import their architecture lazily; building
it happens on the ``meta`` device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ContentError(ValueError):
    """The file does not hold what its registry entry is for; the message names the first differences."""


Shapes = dict[str, tuple[int, ...]]


# ----------------------------------------------------------------------------------------------- loading
def load_torch(path: Path) -> Any:
    """``torch.load(weights_only=True)`` on CPU, memory-mapped when the file is in the zip format.
    Raises :class:`ContentError` for anything that is not a safely loadable PyTorch file."""
    import torch

    with open(path, "rb") as f:
        head = f.read(4)
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save zip archive / legacy pickle protocol 2+
        raise ContentError(f"not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle; first bytes "
                           f"{head.hex() or 'none: empty file'})")
    if head[:4] == b"PK\x03\x04":  # zip format: map it, so only the metadata is read
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:  # noqa: BLE001  retried without mmap below, which gives the reason
            log.debug("mmap load of %s failed (%s); reading it", path, e)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  any reason a file is not a safe PyTorch checkpoint
        why = _torch_load_reason(str(e)) or type(e).__name__
        raise ContentError(f"not a PyTorch checkpoint loadable with weights_only=True ({why[:200]})") from None


def _torch_load_reason(msg: str) -> str:
    """The informative line of a torch.load error (PyTorch wraps the unpickler's reason in boilerplate)."""
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    boiler = ("Weights only load failed", "Please file an issue", "Check the documentation", "In PyTorch 2.6")
    useful = [ln for ln in lines if not ln.startswith(boiler)]
    return (useful[0] if useful else (lines[0] if lines else ""))[:200]


def tensor_shapes(state: Any, what: str) -> Shapes:
    """{key: shape} of a flat state dict; ContentError when ``state`` is not a dict of tensors."""
    import torch

    if not isinstance(state, dict) or not state:
        raise ContentError(f"expected a {what} state dict (a mapping of tensors), got {type(state).__name__}"
                           + (" (empty)" if isinstance(state, dict) else ""))
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ContentError(f"expected a {what} state dict of tensors; non-tensor entries: {', '.join(bad[:5])}")
    return {str(k): tuple(v.shape) for k, v in state.items()}


def compare_shapes(got: Shapes, expected: Shapes, what: str, limit: int = 5) -> None:
    """Raise :class:`ContentError` naming the first missing, unexpected and mismatched keys."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    mismatched = [f"{k} {fmt_shape(got[k])} (expected {fmt_shape(expected[k])})"
                  for k in expected if k in got and got[k] != expected[k]]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", mismatched)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    raise ContentError(f"not the {what} checkpoint ({len(expected)} tensors expected): {'; '.join(parts)}")


def fmt_shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "scalar"


def tsv_shapes(path: Path) -> Shapes:
    """The official key list recorded from the authors' file: ``key<TAB>AxBxC<TAB>dtype`` rows."""
    rows = Path(path).read_text().splitlines()[1:]
    out: Shapes = {}
    for row in rows:
        if row.strip():
            key, shape, _ = row.split("\t")
            out[key] = tuple(int(x) for x in shape.split("x")) if shape else ()
    return out


def meta_shapes(build: Callable[[], Any]) -> Shapes:
    """{key: shape} of the module ``build()`` makes, built on the ``meta`` device (names and shapes only)."""
    import torch

    with torch.device("meta"):
        model = build()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def array_shapes(arrays: dict[str, Any], expected: dict[str, tuple[int, ...]], what: str) -> None:
    """Raise :class:`ContentError` unless ``arrays`` holds every ``expected`` name with that shape."""
    got = {k: tuple(getattr(v, "shape", ())) for k, v in arrays.items() if k in expected}
    missing = [k for k in expected if k not in arrays]
    if missing:
        raise ContentError(f"not {what}: missing arrays {', '.join(missing)} (has: {', '.join(sorted(arrays)) or 'none'})")
    bad = [f"{k} {fmt_shape(got[k])} (expected {fmt_shape(s)})" for k, s in expected.items() if got[k] != s]
    if bad:
        raise ContentError(f"not {what}: wrong shapes: {', '.join(bad)}")


# ----------------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class ContentCheck:
    """A named check: ``fn(path)`` raises :class:`ContentError` when the file is not what it should be."""

    name: str
    fn: Callable[[Path], None]
    #: what it verifies, one line (``bench weights list``: "verified by")
    description: str


_CHECKS: dict[str, ContentCheck] = {}


def register_content_check(name: str, fn: Callable[[Path], None], description: str) -> None:
    """Add check ``name``. Registering the same function again (a re-imported owner module) is harmless; another
    function under a taken name is a ``ValueError``."""
    old = _CHECKS.get(name)
    if old is not None and (old.fn.__module__, old.fn.__qualname__) != (fn.__module__, fn.__qualname__):
        raise ValueError(f"content check {name!r} registered twice ({old.fn.__module__} and {fn.__module__})")
    _CHECKS[name] = ContentCheck(name, fn, description)


def content_checks() -> dict[str, ContentCheck]:
    """The registered checks by name (a copy)."""
    return dict(_CHECKS)


def describe_check(name: str) -> str:
    """The description of check ``name``; the name itself when no owner has registered it (yet)."""
    c = _CHECKS.get(name)
    return c.description if c is not None else name


def check(name: str, path: str | Path) -> None:
    """Run content check ``name`` on ``path``; raises :class:`ContentError` with the reason, ``KeyError`` for a
    check no package has registered."""
    if name not in _CHECKS:
        raise KeyError(f"unknown content check {name!r}; known: {', '.join(sorted(_CHECKS))} (the package that "
                       "owns the architecture registers it: import baselines.weights_checks / "
                       "evaluation.weights_checks)")
    _CHECKS[name].fn(Path(path))


# ----------------------------------------------------------------------------------------------- the kernel's own
def _check_arcface18(path: Path) -> None:
    from bfrcore.faces.arcface18 import ResNetArcFace18, strip_module_prefix

    state = load_torch(path)
    if not isinstance(state, dict):
        tensor_shapes(state, "ArcFace ResNet-18")
    compare_shapes(tensor_shapes(strip_module_prefix(state), "ArcFace ResNet-18"), meta_shapes(ResNetArcFace18),
                   "ArcFace ResNet-18 (128x128 grey)")


register_content_check("arcface-resnet18", _check_arcface18, "keys+shapes of ResNetArcFace18 (evaluation.identity)")
