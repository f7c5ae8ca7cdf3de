"""Run logs: one CSV per stream (``<out>/train_log.csv``, ``<out>/val_log.csv``) and TensorBoard (``<out>/tb``).

CSV rows are ``step`` plus scalar columns; a column that appears later is added by rewriting the file with the
union header. On resume from step ``s`` rows with ``step > s`` (written after the checkpoint) are dropped, so a
resumed run's log reads like an uninterrupted one; TensorBoard purges the same steps.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)


class CSVLog:
    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = Path(path)
        self.header: list[str] = []
        self.rows: list[dict[str, str]] = []
        if self.path.is_file():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                self.header = list(reader.fieldnames or [])
                self.rows = [r for r in reader]
            if resume_step is None:
                resume_step = -1  # a fresh run in an existing folder starts a fresh log
            kept = [r for r in self.rows if r.get("step") and int(float(r["step"])) <= resume_step]
            if len(kept) != len(self.rows):
                self.rows = kept
                self._rewrite()

    def _rewrite(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.header, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(buf.getvalue())
        os.replace(tmp, self.path)

    def write(self, step: int, values: Mapping[str, float]) -> None:
        row = {"step": str(step), **{k: _fmt(v) for k, v in values.items()}}
        new_cols = [k for k in row if k not in self.header]
        self.rows.append(row)
        if new_cols or not self.path.is_file():
            self.header += new_cols
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._rewrite()
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.header, extrasaction="ignore", lineterminator="\n").writerow(row)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


class RunLogger:
    """CSV + optional TensorBoard. ``log(stream, step, values)`` with stream 'train' or 'val'."""

    def __init__(self, out: Path, resume_step: int | None = None, tensorboard: bool = True):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.csv = {s: CSVLog(self.out / f"{s}_log.csv", resume_step) for s in ("train", "val")}
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:  # tensorboard is a declared dependency; say so instead of failing a run
                log.warning("TensorBoard logging disabled (%s); CSV logs are still written", e)
            else:
                purge = None if resume_step is None else resume_step + 1
                self.tb = SummaryWriter(str(self.out / "tb"), purge_step=purge)

    def log(self, stream: str, step: int, values: Mapping[str, float]) -> None:
        self.csv[stream].write(step, values)
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(f"{stream}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
            self.tb = None
