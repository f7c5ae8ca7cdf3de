"""Training checkpoints in our format, written atomically, readable with ``torch.load(weights_only=True)``.

``<out>/checkpoints/step_<n>.pt`` and ``<out>/checkpoints/last.pt`` (the newest; what a rerun resumes from)::

    {"format": "celebref.checkpoint/1", "model": "dmdnet", "config": {...model config fields...},
     "state_dict": {...}, "ema": {...}, "step": 1200,
     "train_config": {...TrainConfig as plain types...}, "ema_updates": 1200,
     "discriminators": {"face": {...}, "components": {...}}, "optimizers": {"g": {...}, "d": {...}},
     "schedulers": {"g": {...}, "d": {...}}, "scaler": {...}, "rng": {...}, "metrics": {...}, "versions": {...}}

The contract (header keys and types, tensor state dicts, training state) is
:func:`bfrcore.formats.run.validate_checkpoint`, checked before every save and on every load.

Plus ``"rng_ranks": [{...}, ...]`` (every rank's RNG state) when written by a multi-process (DDP) run; ``rng`` is
then rank 0's. Model weights are those of the unwrapped modules (no DDP ``module.`` prefix).

Everything is tensors or plain Python types, so ``baselines.create_model(name, weights=path)`` loads it safely and
restores the EMA weights with the model config stored here.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines.registry import CHECKPOINT_FORMAT
from bfrcore.formats import FormatError
from bfrcore.formats.run import validate_checkpoint

log = logging.getLogger(__name__)

LAST = "last.pt"
_STEP_RE = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_dir(out: str | os.PathLike) -> Path:
    return Path(out) / "checkpoints"


def step_path(out: str | os.PathLike, step: int) -> Path:
    return checkpoint_dir(out) / f"step_{step:08d}.pt"


def last_path(out: str | os.PathLike) -> Path:
    return checkpoint_dir(out) / LAST


# ----------------------------------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    """Global RNG states (torch CPU/CUDA, Python, NumPy legacy) as tensors and plain types."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": _to_plain(random.getstate()),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_to_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_plain(v):
    return [_to_plain(x) for x in v] if isinstance(v, (tuple, list)) else v


def _to_tuple(v):
    return tuple(_to_tuple(x) for x in v) if isinstance(v, list) else v


# ----------------------------------------------------------------------------------------------- save / load
def save_atomic(obj: dict, path: Path) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def save_checkpoint(out: str | os.PathLike, step: int, payload: dict, keep: int = 2) -> Path:
    """Write ``step_<n>.pt`` and point ``last.pt`` at it (hard link, or a copy where links are unsupported);
    keep the ``keep`` newest step files. Returns the step file."""
    sp = step_path(out, step)
    validate_checkpoint(payload, sp, writing=True)  # bfrcore.formats.run: FormatError before anything is written
    save_atomic(payload, sp)
    last = last_path(out)
    tmp = last.with_name(f".{LAST}.tmp{os.getpid()}")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(sp, tmp)
    except OSError:
        shutil.copy2(sp, tmp)
    os.replace(tmp, last)
    _prune(out, keep=max(keep, 1))
    return sp


def _prune(out, keep: int) -> None:
    files = sorted((int(m.group(1)), p) for p in checkpoint_dir(out).iterdir() if (m := _STEP_RE.match(p.name)))
    for _, p in files[:-keep]:
        p.unlink()


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load one of our checkpoints safely (weights_only=True) on CPU and validate it against
    :func:`bfrcore.formats.run.validate_checkpoint` (FormatError naming the file and the key)."""
    try:
        ck = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as e:
        raise FormatError(path, "(file)", f"a {CHECKPOINT_FORMAT} checkpoint (torch.save, tensors and plain types)",
                          f"unreadable ({str(e).splitlines()[0][:100]})") from None
    validate_checkpoint(ck, path)
    return ck


def find_resume(out: str | os.PathLike) -> Path | None:
    p = last_path(out)
    return p if p.is_file() else None
