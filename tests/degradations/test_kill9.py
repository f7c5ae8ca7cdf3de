"""kill -9 of `bench degrade --workers 2` and `bench evaluate`: no worker outlives the parent, and a rerun
gives exactly the outputs of an uninterrupted run (real processes, the mini dataset of real photos)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from bfrcore.imageio import file_sha256
from tests.kill9_support import Run, console_script, descendants, needs_proc

pytestmark = [needs_proc, pytest.mark.shared_data]

PRESET, SEED = "gfpgan", 3
EVAL_LIMIT = 16


@pytest.fixture(scope="module")
def reference_testset(mini_dataset, tmp_path_factory) -> Path:
    """The uninterrupted run (in this process, one worker: the files do not depend on the worker count)."""
    from degradations.testset import generate_testset

    out = tmp_path_factory.mktemp("kill9_ref") / "ts"
    generate_testset(mini_dataset, PRESET, SEED, out, split=None, workers=1)
    return out


def _lq_files(root: Path) -> dict[str, str]:
    return {p.name: file_sha256(p) for p in sorted((root / "lq").glob("*.png"))}


def _records(root: Path) -> list[str]:
    p = root / ".partial" / "records.jsonl"
    return p.read_text().splitlines() if p.is_file() else []


def test_kill9_degrade_workers_die_and_rerun_matches(mini_dataset, reference_testset, tmp_path):
    out = tmp_path / "ts"
    cmd = [console_script("bench"), "degrade", "--dataset", str(mini_dataset), "--preset", PRESET, "--seed", str(SEED),
           "--split", "all", "--out", str(out), "--workers", "2"]
    run = Run(cmd, tmp_path / "killed.log")
    try:
        # both workers running and at least two images recorded (the test edits two records): the parent is mid-run
        run.wait_until(lambda: len(descendants(run.proc.pid)) >= 2 and len(_records(out)) >= 2, "two records")
        procs, survivors, _ = run.kill9_parent()
    finally:
        run.cleanup()
    assert len(procs) >= 2, f"expected the worker processes to be running, found {procs}"
    assert not survivors, f"worker processes {survivors} outlived the killed `bench degrade`"
    assert not (out / "testset.json").exists(), "the run finished before it was killed: nothing was tested"
    # nothing writes any more: the folder stays as the kill left it
    snapshot = _lq_files(out)
    n_records = len(_records(out))
    assert n_records < 49

    # what a kill can leave, on top of what it did leave: a temporary PNG, a record line cut short, a PNG without
    # a record, a PNG whose bytes no longer match its record
    lq = out / "lq"
    (lq / ".00075_0.png.k9x1.tmp").write_bytes(b"\x89PNG half")
    recs = _records(out)
    dropped = json.loads(recs[0])["image_id"]  # its PNG stays, its record goes
    changed = json.loads(recs[1])["image_id"]
    (out / ".partial" / "records.jsonl").write_text("\n".join(recs[1:]) + '\n{"image_id": "00146_1", "lq_sha')
    (lq / f"{changed}.png").write_bytes((lq / f"{changed}.png").read_bytes()[:-20])
    assert (lq / f"{dropped}.png").is_file()
    assert snapshot.keys() <= _lq_files(out).keys()

    rerun = Run(cmd, tmp_path / "rerun.log")
    assert rerun.finish() == 0, rerun.output()
    info, ref = (json.loads((d / "testset.json").read_text()) for d in (out, reference_testset))
    assert info["testset_hash"] == ref["testset_hash"]
    assert info["n_images"] == ref["n_images"] == 49
    assert (out / "checksums.sha256").read_text() == (reference_testset / "checksums.sha256").read_text()
    assert _lq_files(out) == _lq_files(reference_testset)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "params.parquet"),
                                  pd.read_parquet(reference_testset / "params.parquet"))
    assert not list(lq.glob(".*")), "temporary files of the killed run were left behind"
    assert re.search(rf"\b{n_records - 2} reused\b", rerun.output()), rerun.output()


def test_cut_record_line_is_dropped_before_appending(tmp_path):
    """A record line cut by the kill is removed before new ones are appended (else the next is glued to it)."""
    from degradations.testset import _open_records, _read_records

    p = tmp_path / "records.jsonl"
    p.write_text('{"image_id": "a", "lq_sha256": "1"}\n{"image_id": "b", "lq_sh')
    with _open_records(p) as f:
        f.write(json.dumps({"image_id": "c", "lq_sha256": "3"}) + "\n")
    assert sorted(_read_records(p)) == ["a", "c"]


def _eval_outputs(root: Path) -> dict:
    run_dir = next(root.glob("bicubic/*/generic"))
    df = pd.read_parquet(run_dir / "metrics.parquet").drop(columns=["seconds"])
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"rows": df.to_dict("records"), "metrics": summary["metrics"], "testset": summary["testset"]["hash"],
            "n": summary["n_scored"],
            "restored": {p.name: file_sha256(p) for p in sorted((run_dir / "restored").glob("*.png"))}}


def test_kill9_evaluate_resume_matches(reference_testset, tmp_path):
    """`bench evaluate` is one process: a kill -9 mid-run leaves rows that the rerun completes, identically."""
    from bfrcli.bench import main

    def args(out: Path) -> list[str]:
        return ["evaluate", "--model", "bicubic", "--testset", str(reference_testset), "--out", str(out),
                "--metrics", "psnr", "--device", "cpu", "--bootstrap", "200", "--limit", str(EVAL_LIMIT), "-q"]

    def cmd(out: Path) -> list[str]:
        return [console_script("bench"), *args(out)]

    assert main(args(tmp_path / "ref")) == 0  # the uninterrupted run, in this process
    out = tmp_path / "res"
    run = Run(cmd(out), tmp_path / "killed.log")

    def rows_written() -> bool:
        return any(p.read_text().count("\n") >= 1 for p in out.glob("bicubic/*/generic/.partial.jsonl"))

    try:
        run.wait_until(rows_written, "the first result row")
        _, survivors, _ = run.kill9_parent()
    finally:
        run.cleanup()
    assert not survivors, f"processes {survivors} outlived the killed `bench evaluate`"
    assert not list(out.glob("bicubic/*/generic/summary.json")), "the run finished before it was killed"
    rerun = Run(cmd(out), tmp_path / "rerun.log")
    assert rerun.finish() == 0, rerun.output()
    got, want = _eval_outputs(out), _eval_outputs(tmp_path / "ref")
    assert got["n"] == EVAL_LIMIT
    assert got == want
