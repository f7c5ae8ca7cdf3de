"""The torch device of a run: ``auto`` | ``cpu`` | ``cuda`` (the ``--device`` flag's values) -> a device name."""

from __future__ import annotations

from bfrcore.errors import InputError


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when available else 'cpu'; 'cuda' without a GPU (or an unknown name) is an
    :class:`~bfrcore.errors.InputError` (the CLIs exit 2)."""
    if name == "cpu":
        return "cpu"
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device cuda was requested but torch sees no CUDA device")
        return "cuda"
    raise InputError(f"unknown device {name!r}")


def resolve_device_lazily(name: str) -> str:
    """:func:`resolve_device` for processes that need torch only on a GPU: ``auto`` is ``cpu`` without importing
    torch when no NVIDIA driver is loaded (``/proc/driver/nvidia/version``); ``cuda:N`` is kept as given once CUDA
    is available."""
    from pathlib import Path

    if name == "cpu" or (name == "auto" and not Path("/proc/driver/nvidia/version").exists()):
        return "cpu"
    if name.startswith("cuda:"):
        resolve_device("cuda")
        return name
    return resolve_device(name)
