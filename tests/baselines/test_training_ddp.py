"""Distributed (DDP, gloo on CPU) training: real 2-process runs of the tiny test model of test_training.py.

One module-scoped 2-process run (4 steps, global batch 4 = 2 per rank, GAN from step 1, checkpoints at steps 2 and
4) is compared with the single-process run of the same config: the ranks train on disjoint shards whose union is
the single-process batch, the rank-averaged losses match, only rank 0 writes files, and every rank ends with the
same weights. A second 2-process run resumes from the step-2 checkpoint and must reproduce steps 3-4; the final
checkpoint loads into a single-process Trainer. Every process runs one torch thread.
"""

from __future__ import annotations

import csv
import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from baselines.registry import create_model
from baselines.training import checkpoint as ckpt
from baselines.training.config import parse_config
from baselines.training.trainer import Trainer
from tests.baselines.test_training import TEST_MODEL, base_raw, register_test_model

WORLD = 2
STEPS = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raw(dataset: Path, out: Path, **top) -> dict:
    """The DDP test config: global batch 4, GAN from step 1, checkpoints every 2 steps (all kept), 1 thread."""
    raw = base_raw(dataset, out, batch_size=4, ckpt_every=2, keep_checkpoints=STEPS, threads=1, **top)
    raw["schedule"] = {"total_steps": STEPS, "warmup_steps": 1}
    return raw


def _record_run(trainer: Trainer, record: dict) -> None:
    """Make ``trainer`` note the image ids of every step's batch (``record['ids']``, keyed by the step reached)."""
    step_fn = trainer.train_step

    def recording_step(batch: dict) -> dict:
        record["ids"][trainer.step + 1] = list(batch["image_id"])
        return step_fn(batch)

    trainer.train_step = recording_step  # type: ignore[method-assign]


def _worker(rank: int, port: int, raw: dict, resume: str | None, result_dir: str) -> None:
    """One rank of a torchrun-like job: the env variables torchrun sets, then a Trainer that sets DDP up itself."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1", BENCH_DDP_TIMEOUT_MIN="2")
    torch.set_num_threads(1)
    register_test_model()
    record: dict = {"ids": {}, "losses": {}, "ckpt_writes": 0}
    save_checkpoint = ckpt.save_checkpoint

    def counting_save(*args, **kwargs):
        record["ckpt_writes"] += 1
        return save_checkpoint(*args, **kwargs)

    ckpt.save_checkpoint = counting_save
    tr = Trainer(parse_config(raw), resume=resume, on_step=lambda s, v: record["losses"].__setitem__(s, v))
    _record_run(tr, record)
    record.update(is_main=tr.is_main, has_logger=tr.logger is not None, local_batch=tr.local_batch,
                  start=tr.step)
    res = tr.fit()
    record["step"] = res.step
    torch.save({"model": tr.model.state_dict(), "ema": tr.ema.state_dict(), "d": tr._discriminator_states()},
               Path(result_dir) / f"state_{rank}.pt")
    (Path(result_dir) / f"record_{rank}.json").write_text(json.dumps(record))


def run_two_processes(raw: dict, result_dir: Path, resume: str | None = None) -> list[dict]:
    """A 2-process gloo run of ``raw``; per rank: the record (ids, losses, ...) and the final states."""
    result_dir.mkdir(parents=True, exist_ok=True)
    mp.spawn(_worker, args=(_free_port(), raw, resume, str(result_dir)), nprocs=WORLD, join=True)
    out = []
    for r in range(WORLD):
        rec = json.loads((result_dir / f"record_{r}.json").read_text())
        rec["ids"] = {int(k): v for k, v in rec["ids"].items()}
        rec["losses"] = {int(k): v for k, v in rec["losses"].items()}
        rec["state"] = torch.load(result_dir / f"state_{r}.pt", map_location="cpu", weights_only=True)
        out.append(rec)
    return out


def test_step_sampler_shards_partition_the_global_batches():
    from itertools import islice

    from baselines.training.data import StepSampler

    n, batch, steps = 7, 4, 5  # batches cross epoch boundaries
    single = list(islice(iter(StepSampler(n, seed=3)), batch * steps))
    for world in (2, 4):
        shards = [list(islice(iter(StepSampler(n, 3, rank=r, world_size=world, batch_size=batch)),
                              batch // world * steps)) for r in range(world)]
        k = batch // world
        for s in range(steps):
            assert [x for sh in shards for x in sh[s * k:(s + 1) * k]] == single[s * batch:(s + 1) * batch]
    # resuming at step 2 gives the same shard as the uninterrupted stream
    later = list(islice(iter(StepSampler(n, 3, start=2 * batch, rank=1, world_size=2, batch_size=batch)), 2))
    assert later == single[2 * batch + 2:2 * batch + 4]
    with pytest.raises(ValueError, match="multiple of world_size"):
        StepSampler(n, 3, rank=0, world_size=3, batch_size=4)
    with pytest.raises(ValueError, match="start 2"):
        StepSampler(n, 3, start=2, rank=0, world_size=2, batch_size=4)


@pytest.fixture(scope="module")
def runs(mini_dataset, tmp_path_factory) -> dict:
    """The single-process run and the 2-process run of the same config."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ddp")
    single: dict = {"ids": {}, "losses": {}}
    tr = Trainer(parse_config(_raw(mini_dataset, root / "single")), resume=None,
                 on_step=lambda s, v: single["losses"].__setitem__(s, v))
    _record_run(tr, single)
    tr.fit()
    ranks = run_two_processes(_raw(mini_dataset, root / "full"), root / "full_records")
    return {"root": root, "single": single, "ranks": ranks, "dataset": mini_dataset}


@pytest.mark.shared_data
def test_ranks_train_on_disjoint_shards_of_the_single_process_batches(runs):
    r0, r1 = runs["ranks"]
    assert r0["local_batch"] == r1["local_batch"] == 2
    for step in range(1, STEPS + 1):
        a, b = r0["ids"][step], r1["ids"][step]
        assert len(a) == len(b) == 2 and not set(a) & set(b), (step, a, b)
        assert a + b == runs["single"]["ids"][step]  # rank r takes the r-th half of the global batch
    # the rank-averaged losses are those of the single-process run (mean of the halves' means = the batch mean)
    for step in range(1, STEPS + 1):
        for k in ("l1", "l1_plain", "adv", "comp_adv", "d_face", "d_comp", "total"):
            if k not in runs["single"]["losses"][step]:
                continue
            mean = (r0["losses"][step][k] + r1["losses"][step][k]) / 2
            tol = 1e-5 if step == 1 else 1e-3
            assert mean == pytest.approx(runs["single"]["losses"][step][k], rel=tol, abs=1e-6), (step, k)
    assert "d_face" in r0["losses"][2] and "extra_gate_l2" in r0["losses"][1]


@pytest.mark.shared_data
def test_rank0_alone_writes_and_every_rank_ends_with_the_same_weights(runs):
    r0, r1 = runs["ranks"]
    out = runs["root"] / "full"
    assert r0["is_main"] and r0["has_logger"] and not r1["is_main"] and not r1["has_logger"]
    assert r0["ckpt_writes"] == 2 and r1["ckpt_writes"] == 0  # steps 2 and 4, by rank 0 only
    assert r0["step"] == r1["step"] == STEPS
    with open(out / "train_log.csv", newline="") as f:
        assert [int(row["step"]) for row in csv.DictReader(f)] == [1, 2, 3, 4]
    with open(out / "val_log.csv", newline="") as f:
        assert [int(row["step"]) for row in csv.DictReader(f)] == [4]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["batch_size"] == {"global": 4, "per_rank": 2}
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "last.pt", "step_00000002.pt", "step_00000004.pt"]
    for part in ("model", "ema"):
        for k, v in r0["state"][part].items():
            assert torch.equal(v, r1["state"][part][k]), (part, k)
    for name, sd in r0["state"]["d"].items():
        for k, v in sd.items():
            assert torch.equal(v, r1["state"]["d"][name][k]), (name, k)
    ck = torch.load(ckpt.last_path(out), map_location="cpu", weights_only=True)
    assert len(ck["rng_ranks"]) == 2
    assert not any(k.startswith("module.") for k in ck["state_dict"])
    for k, v in ck["state_dict"].items():
        assert torch.equal(v, r0["state"]["model"][k])


@pytest.mark.shared_data
def test_resumed_two_process_run_repeats_the_uninterrupted_one(runs):
    root = runs["root"]
    step2 = ckpt.step_path(root / "full", 2)
    resumed = run_two_processes(_raw(runs["dataset"], root / "resumed"), root / "resumed_records",
                                resume=str(step2))
    for rank, (full, res) in enumerate(zip(runs["ranks"], resumed)):
        assert res["start"] == 2 and sorted(res["losses"]) == [3, 4]
        for step in (3, 4):
            assert res["ids"][step] == full["ids"][step]
            for k, v in full["losses"][step].items():
                assert res["losses"][step][k] == pytest.approx(v, rel=1e-6, abs=1e-7), (rank, step, k)
        for k, v in full["state"]["model"].items():
            torch.testing.assert_close(res["state"]["model"][k], v, rtol=1e-6, atol=1e-7)


@pytest.mark.shared_data
def test_two_process_checkpoint_loads_in_a_single_process_trainer(runs, tmp_path):
    last = ckpt.last_path(runs["root"] / "full")
    ck = torch.load(last, map_location="cpu", weights_only=True)
    raw = _raw(runs["dataset"], tmp_path / "one")
    raw["schedule"]["total_steps"] = STEPS + 1
    tr = Trainer(parse_config(raw), resume=str(last))
    assert tr.step == STEPS and not tr.dist.enabled and tr.local_batch == 4
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, ck["state_dict"][k])
    res = tr.fit()
    assert res.step == STEPS + 1 and res.resumed_from == STEPS
    model = create_model(TEST_MODEL, weights=last)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ck["ema"][k])


@pytest.mark.shared_data
def test_torchrun_cli_trains_dmdnet_with_unused_branches_and_gan(mini_dataset, tmp_path):
    """The documented command: torchrun (python -m torch.distributed.run) -m bfrcli.bench train, 2 CPU processes,
    the tiny DMDNet shrunk (generic + specific outputs, dictionary init, both discriminators from step 1)."""
    import subprocess
    import sys

    from tests.helpers import PROJECT_ROOT

    out = tmp_path / "run"
    model_config = "{base: tiny, ngf: 8, n_atoms: 4, size: 64, eye_roi: [5, 3, 2], mouth_roi: [6, 4, 2]}"
    sets = [f"model_config={model_config}", "schedule.warmup_steps=1", "loss.gan_start_step=1",
            "loss.perceptual=0", "init.generic_dictionary_images=8", "init.batch_size=4", "threads=1",
            "val_identity=false", "data.val_max_images=2", "tensorboard=false", "channels_last=false", "log_every=1"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "-m", "bfrcli.bench", "train", "--config", str(PROJECT_ROOT / "configs/train/dmdnet_tiny.yaml"),
           "--out", str(out), "--dataset", str(mini_dataset), "--device", "cpu", "--workers", "0", "--steps", "2",
           "-q"] + [a for s in sets for a in ("--set", s)]
    env = dict(os.environ, OMP_NUM_THREADS="1", BENCH_DDP_TIMEOUT_MIN="2")
    proc = subprocess.run(cmd, check=False, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("bench train: 2 done") == 1  # the summary comes from rank 0 only
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["step"] == 2 and summary["init"]["images"] == 8
    with open(out / "train_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2] and float(rows[1]["d_comp"]) > 0
    assert float(rows[1]["l1_generic"]) > 0
    model = create_model("dmdnet", weights=ckpt.last_path(out))
    assert model.config.size == 64 and model.weights_record["checkpoint_step"] == 2
