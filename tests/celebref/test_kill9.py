"""kill -9 of `celebref build --workers 2`: the fork server and its workers go with the parent, and the rerun
resumes to exactly the dataset of an uninterrupted build (real processes, six real photos)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.celebref.build_support import image_hashes
from tests.kill9_support import Run, console_script, descendants, needs_proc

pytestmark = [needs_proc, pytest.mark.shared_data]

#: cheap: one photo per shard (so the kill lands between shards), no NIQE, no report
CFG = {"runner": {"shard_size": 1}, "identity": {"min_images": 2}, "output": {"report": False},
       "quality": {"niqe": False}}


@pytest.fixture(scope="module")
def six_photos(celebref_examples, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("k9src") / "chq"
    for ident in ("00075", "00089"):
        (root / ident).mkdir(parents=True)
        for f in sorted((celebref_examples / "RefsImg" / ident).glob("*.png"))[:3]:
            (root / ident / f.name).symlink_to(f)
    return root


def _item_results(out: Path) -> list[Path]:
    return list((out / "cache").glob("*/*/items/*/*.json"))


def test_kill9_build_workers_die_and_rerun_matches(six_photos, tmp_path):
    from celebref.pipeline import build_dataset, parse_config

    ref = tmp_path / "ref"
    build_dataset([f"celebrefhq:{six_photos}"], ref, parse_config(CFG), workers=1)  # uninterrupted, inline

    cfg = tmp_path / "build.yaml"
    cfg.write_text(yaml.safe_dump(CFG))
    out = tmp_path / "ds"
    cmd = [console_script("celebref"), "build", "--source", f"celebrefhq:{six_photos}", "--out", str(out),
           "--config", str(cfg), "--workers", "2"]
    run = Run(cmd, tmp_path / "killed.log")
    try:
        # the fork server, its two workers, and a first per-photo result: the build is mid-stage
        run.wait_until(lambda: len(descendants(run.proc.pid)) >= 3 and _item_results(out), "the first item result")
        procs, survivors, _ = run.kill9_parent()
    finally:
        run.cleanup()
    assert len(procs) >= 3, f"expected the fork server and its workers, found {procs}"
    assert not survivors, f"processes {survivors} (fork server / workers) outlived the killed `celebref build`"
    assert not (out / "build.json").exists(), "the build finished before it was killed: nothing was tested"

    rerun = Run(cmd, tmp_path / "rerun.log")
    assert rerun.finish() == 0, rerun.output()
    got, want = (json.loads((d / "build.json").read_text()) for d in (out, ref))
    assert got["dataset_hash"] == want["dataset_hash"]
    assert got["counts"] == want["counts"]
    assert image_hashes(out) == image_hashes(ref)
    assert len(image_hashes(out)) >= 4


# ------------------------------------------------------------------------------------------ bfrcore.procutil
_CHAIN = r"""
import os, subprocess, sys, time
role, ready = sys.argv[1], sys.argv[2]
if role == "a":    # the 'main' process: starts b, which starts c; then waits to be killed
    subprocess.Popen([sys.executable, __file__, "b", ready, str(os.getpid())])
elif role == "b":  # the 'fork server': starts c, lives on
    subprocess.Popen([sys.executable, __file__, "c", ready, sys.argv[3]])
else:              # the 'worker': guarded by the watchdog only (no PDEATHSIG), watching a, not its parent b
    from bfrcore.procutil import die_with_parent
    die_with_parent(int(sys.argv[3]), pdeathsig=False)
    with open(ready, "w") as f:
        f.write(f"{os.getppid()} {os.getpid()}")
time.sleep(120)
"""


def test_watchdog_follows_the_main_process_not_the_parent(tmp_path):
    """main -> server -> worker: killing main ends the worker while its own parent (the server) still lives."""
    import os
    import signal
    import sys
    import time

    from tests.kill9_support import alive

    script, ready = tmp_path / "chain.py", tmp_path / "ready"
    script.write_text(_CHAIN)
    run = Run([sys.executable, str(script), "a", str(ready)], tmp_path / "chain.log")
    try:
        run.wait_until(lambda: ready.is_file() and ready.read_text(), "the guarded worker")
        server, worker = (int(x) for x in ready.read_text().split())
        procs = descendants(run.proc.pid)
        assert {server, worker} <= set(procs)
        os.kill(run.proc.pid, signal.SIGKILL)
        run.proc.wait()
        t0 = time.monotonic()
        while alive({worker: procs[worker]}) and time.monotonic() - t0 < 10:
            time.sleep(0.02)
        assert not alive({worker: procs[worker]}), "the worker outlived the main process"
        assert alive({server: procs[server]}), "the server is not guarded here and must still run"
    finally:
        run.cleanup()


def test_pid_alive_treats_zombies_as_dead():
    import os
    import subprocess
    import time

    from bfrcore.procutil import pid_alive

    assert pid_alive(os.getpid())
    p = subprocess.Popen(["true"])
    t0 = time.monotonic()
    while pid_alive(p.pid) and time.monotonic() - t0 < 10:  # exits, stays a zombie until waited for
        time.sleep(0.01)
    assert os.path.exists(f"/proc/{p.pid}") and not pid_alive(p.pid)
    p.wait()
    assert not pid_alive(p.pid)
