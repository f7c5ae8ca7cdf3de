"""Fast integrity check of a test set's inputs before it is scored (`bench evaluate` / `bench score`).

Every score names the test set by its ``testset_hash`` (testset.json), which stands for a fixed set of LQ files.
Scoring files that were edited, added or removed after ``bench degrade`` would report that hash for other inputs,
so the scorers call :func:`require_verified` first. It hashes every ``lq/*.png`` once (sha256; measured ~20 ms
for 27 PNGs of 512x512, 6.4 MB, one core, warm page cache) and compares them with ``checksums.sha256``,
``params.parquet`` (``lq_sha256``) and the
recorded ``testset_hash``. It does not regenerate images: ``bench degrade --verify`` does that (slow, complete).

:func:`verify_testset` is a pure function (no exceptions for a damaged set, a report); :func:`require_verified`
turns a failed report into a :class:`TestsetMismatchError` (an input error: exit 2) naming the files, unless
verification was switched off (``--no-verify``), which the summary then records as ``"testset_verified": false``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from bfrcore.errors import InputError
from bfrcore.imageio import file_sha256

#: how many file names a message lists before "(+N more)"
SHOW = 5


class TestsetMismatchError(InputError):
    """The LQ files of a test set do not match its records (checksums.sha256, params.parquet, testset_hash)."""

    __test__ = False  # not a pytest class


@dataclass
class TestsetVerifyReport:
    """What :func:`verify_testset` found. Lists hold image ids (``lq/<id>.png``), sorted."""

    __test__ = False  # not a pytest class

    root: Path
    n_files: int = 0  # lq/*.png hashed
    changed: list[str] = field(default_factory=list)  # file hash != checksums.sha256
    missing: list[str] = field(default_factory=list)  # listed (checksums or params) but no file
    extra: list[str] = field(default_factory=list)  # lq/*.png listed nowhere
    inconsistent: list[str] = field(default_factory=list)  # checksums.sha256 / params.parquet / testset.json disagree
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.extra or self.inconsistent)

    def message(self) -> str:
        """One line naming the first offending files of each kind ('' when ok)."""
        parts = []
        for label, ids in (("changed since `bench degrade`", self.changed), ("missing", self.missing),
                           ("not part of the test set", self.extra)):
            if ids:
                more = f" (+{len(ids) - SHOW} more)" if len(ids) > SHOW else ""
                parts.append(f"{len(ids)} LQ file(s) {label}: "
                             + ", ".join(f"lq/{i}.png" for i in ids[:SHOW]) + more)
        parts += self.inconsistent
        return "; ".join(parts)


def _ids_of(files: list[str]) -> list[str]:
    return sorted(n[:-4] for n in files if n.endswith(".png"))


def verify_testset(root: str | os.PathLike) -> TestsetVerifyReport:
    """Hash every ``<root>/lq/*.png`` and compare with the test set's records. Never raises for a damaged test
    set (the report says what is wrong); an unreadable checksums file or testset.json is an ``inconsistent`` item."""
    from bfrcore.testset import (
        CHECKSUMS_FILE,
        INFO_FILE,
        LQ_DIR,
        PARAMS_FILE,
        TestSetError,
        compute_testset_hash,
        parse_checksums,
    )

    t0 = time.perf_counter()
    root = Path(root)
    rep = TestsetVerifyReport(root=root)
    try:
        sums = parse_checksums((root / CHECKSUMS_FILE).read_text())
    except (OSError, UnicodeDecodeError, TestSetError) as e:
        rep.inconsistent.append(f"{CHECKSUMS_FILE} unreadable: {e}")
        sums = {}
    lq_dir = root / LQ_DIR
    present = _ids_of([p.name for p in lq_dir.iterdir() if p.is_file()]) if lq_dir.is_dir() else []
    got = {}
    for iid in present:
        try:
            got[iid] = file_sha256(lq_dir / f"{iid}.png")
        except OSError as e:
            rep.inconsistent.append(f"lq/{iid}.png unreadable: {e}")
    rep.n_files = len(got)

    listed = set(sums)
    params_sha: dict[str, str] = {}
    try:
        import pandas as pd

        df = pd.read_parquet(root / PARAMS_FILE, columns=["image_id", "lq_sha256"])
        params_sha = dict(zip(df["image_id"].astype(str), df["lq_sha256"].astype(str)))
    except Exception as e:  # noqa: BLE001  a missing/damaged parquet is reported, TestSet.load names it too
        rep.inconsistent.append(f"{PARAMS_FILE} unreadable: {type(e).__name__}: {e}")
    listed |= set(params_sha)

    rep.changed = sorted(i for i in got if i in sums and got[i] != sums[i])
    rep.missing = sorted(i for i in listed if i not in got)
    rep.extra = sorted(i for i in got if i not in listed)
    not_in_sums = sorted(i for i in params_sha if i not in sums)
    if sums and not_in_sums:
        rep.inconsistent.append(f"{len(not_in_sums)} image(s) of {PARAMS_FILE} have no line in {CHECKSUMS_FILE}: "
                                + ", ".join(not_in_sums[:SHOW]))
    differ = sorted(i for i in params_sha if i in sums and params_sha[i] != sums[i])
    if differ:
        rep.inconsistent.append(f"{CHECKSUMS_FILE} and {PARAMS_FILE} record different hashes for "
                                + ", ".join(f"lq/{i}.png" for i in differ[:SHOW]))
    try:
        info = json.loads((root / INFO_FILE).read_text())
        recorded = info["testset_hash"]
        if sums and compute_testset_hash(info["dataset"]["hash"], sums) != recorded:
            rep.inconsistent.append(f"{CHECKSUMS_FILE} does not give the recorded testset_hash {str(recorded)[:12]}… "
                                    "(the checksums were edited)")
    except (OSError, ValueError, KeyError, TypeError) as e:
        rep.inconsistent.append(f"{INFO_FILE} unreadable or without testset_hash/dataset.hash: {e}")
    rep.seconds = time.perf_counter() - t0
    return rep


def require_verified(root: str | os.PathLike, *, verify: bool = True) -> dict:
    """The scorers' gate. ``verify``: check with :func:`verify_testset` and raise
    :class:`TestsetMismatchError` (exit 2) naming the files when the check fails. Returns the summary
    record: ``{"testset_verified": True}``, or ``{"testset_verified": False}`` when ``verify`` is off."""
    if not verify:
        return {"testset_verified": False}
    rep = verify_testset(root)
    if not rep.ok:
        raise TestsetMismatchError(f"test set {root} does not match its records: {rep.message()}. Regenerate it "
                                   "with `bench degrade`, or pass --no-verify to score it anyway (recorded in "
                                   "summary.json)")
    return {"testset_verified": True}
