"""Benchmark: DMDNet forward time per 512x512 face on CPU (paper configuration) and peak RSS, ours against the
authors' released implementation measured in the same run, with an output-equality check; per-stage profile.

    git clone https://github.com/csxmli2016/DMDNet /path/to/DMDNet      # the peer (tested at f025001)
    .venv/bin/python benchmarks/bench_dmdnet.py --authors-code /path/to/DMDNet [--threads 2 1] [--repeats 3]

Both implementations get the same weights (a paper-configuration state dict with the official checkpoint's 1,014
keys, random values from ``torch.manual_seed(0)`` with spectral-norm gain 1.3 so that every path reaches the
output (``peers.spectral_norm.set_spectral_gain``): timing does not depend on the values, and the official file is not
downloadable here; the authors' model loads it with strict=True) and the same inputs (a random 512x512
face, the mean-face landmarks, 5 random references). Each (implementation, case) runs in its own subprocess, so
peak RSS = ``ru_maxrss`` of that case alone, checkpoint loading and model construction included, as in real use.

- ``generic``: ours ``model.restore(lq, landmarks)``; theirs ``DMDNet(lq, loc)`` (generic output only);
- ``specific5``: the specific dictionary from the 5 references plus *both* outputs (generic and
  generic+specific). Ours ``model.training_outputs(...)`` in eval mode with the reference cache cleared before
  every run; theirs ``generate_specific_dictionary`` + ``DMDNet(lq, loc, sp_256, sp_128, sp_64)``. Both run under
  no-grad (``main_test.py`` builds the dictionary with autograd on, which is slower; we do not count that).

Each case: 1 warm-up run, then ``--repeats`` timed runs (median reported). Outputs of the two implementations are
compared (max |difference| in [0, 1] units). ``--allocators``: ``reuse`` is what ``bench restore`` / ``evaluate``
/ ``train`` set up for CPU runs (``bfrcore.cpu_allocator``); ``default`` is glibc as is. Both implementations
run under each setting, so every ratio compares like with like.

Without ``--authors-code`` the authors' columns show the figures quoted in issue 6 (2.7 s generic, 9.5 s
specific, 2.3 GB), marked as quoted. The machine may be shared: the load average and a bare 3x3-convolution
throughput measured next to each case are printed so the numbers can be judged.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AUTHORS = {"generic": 2.7, "specific5": 9.5, "rss_gb": 2.3,
           "source": "issue 6: authors' implementation, same 2-core CPU, torch 2.14.1 (quoted, not measured here)"}
N_REFS = 5
STAGES = ("encoder E_lq", "dictionary building (E_hq + K/V)", "reading (query, read, mask, AdaIN, attention)",
          "ROI crop + paste", "decoder (MSDilate + SFT)", "other")


# ------------------------------------------------------------------------------------------------ worker
def _conv_gflops(threads: int) -> float:
    """Throughput of one bare 3x3 conv (64->64 channels, 256x256), the network's dominant op, right now."""
    import torch

    x = torch.rand(1, 64, 256, 256)
    w = torch.rand(64, 64, 3, 3)
    flops = 2 * 64 * 64 * 9 * 256 * 256
    with torch.inference_mode():
        torch.nn.functional.conv2d(x, w, padding=1)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            torch.nn.functional.conv2d(x, w, padding=1)
            best = min(best, time.perf_counter() - t)
    return flops / best / 1e9


def _flops(mode: str) -> float | None:
    """FLOPs of one forward of the case, counted on the meta device (no compute)."""
    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from baselines.dmdnet import PAPER, DMDNet
        from baselines.landmarks import mean_face_landmarks

        with torch.device("meta"):
            m = DMDNet(PAPER).eval()
        lm = torch.from_numpy(mean_face_landmarks(512))[None]
        lq = torch.empty(1, 3, 512, 512, device="meta")
        fc = FlopCounterMode(display=False)
        with torch.inference_mode(), fc:
            boxes = m.boxes(lm)
            if mode == "generic":
                m(lq, boxes)
            else:
                spec = m.build_specific_dictionary([torch.empty(N_REFS, 3, 512, 512, device="meta")],
                                                   [lm.repeat(N_REFS, 1, 1)])
                m(lq, boxes, spec, with_generic=True)
        return float(fc.get_total_flops())
    except Exception as e:  # noqa: BLE001 - FLOPs are context only
        print(f"flop count failed: {type(e).__name__}: {e}", file=sys.stderr)
        return None


class StageTimer:
    """Adds wall time of hooked modules / wrapped functions to stages (top level only: no double counting)."""

    def __init__(self):
        self.t = {s: 0.0 for s in STAGES}
        self.depth = 0
        self._start: list[float] = []

    def enter(self):
        self.depth += 1
        if self.depth == 1:
            self._start.append(time.perf_counter())

    def leave(self, stage):
        if self.depth == 1:
            self.t[stage] += time.perf_counter() - self._start.pop()
        self.depth -= 1

    def install(self, model):
        import baselines.dmdnet as dm

        def hook(mod, stage):
            mod.register_forward_pre_hook(lambda *_: self.enter())
            mod.register_forward_hook(lambda *_: self.leave(stage))

        hook(model.E_lq, STAGES[0])
        hook(model.E_hq, STAGES[1])
        for name, mod in model.named_children():
            if name.endswith("_KV"):
                hook(mod, STAGES[1])
            elif name.endswith(("_Attention", "_Mask")):
                hook(mod, STAGES[2])
            elif name in ("MSDilate", "up1", "up2", "up3", "up4"):
                hook(mod, STAGES[4])
        for name, mod in model.E_lq.named_children():
            if name.endswith("_Q"):
                hook(mod, STAGES[2])

        def wrap(fn, stage):
            def inner(*a, **k):
                self.enter()
                try:
                    return fn(*a, **k)
                finally:
                    self.leave(stage)
            return inner

        for fname in ("read_shared_dictionary", "read_per_sample_dictionary", "adain"):
            setattr(dm, fname, wrap(getattr(dm, fname), STAGES[2]))
        dm.crop_resize = wrap(dm.crop_resize, STAGES[3])
        model._paste = wrap(model._paste, STAGES[3])


def _inputs(path: Path):
    import torch

    d = torch.load(path, weights_only=True)
    return d["lq"], d["landmarks"], d["refs"], d["ref_landmarks"]


def _timed(run, repeats: int) -> tuple[list[float], object]:
    out = run()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t)
    return times, out


def worker(impl: str, mode: str, threads: int, repeats: int, work: Path, memory_format: str = "channels_last",
           authors_code: Path | None = None) -> dict:
    """One case in this process: returns timings, peak RSS, stages; writes the outputs to ``work``."""
    import resource

    import torch

    torch.set_num_threads(threads)
    from bfrcore.cpu_allocator import reuse_freed_memory

    allocator = reuse_freed_memory()  # as bench restore / evaluate / train do on CPU (off: CELEBREF_CPU_ALLOCATOR)
    load0 = os.getloadavg()[0]
    gflops_before = _conv_gflops(threads)
    lq, lm, refs, ref_lm = _inputs(work / "inputs.pt")
    stages, cached = None, None
    t = time.perf_counter()
    if impl == "ours":
        from baselines import create_model

        # what `bench restore` does: checkpoint file -> strict load, channels-last conv weights, eval mode
        model = create_model("dmdnet", config="paper", weights=work / "weights.pt",
                             channels_last=memory_format == "channels_last")
        build_s = time.perf_counter() - t
        timer = StageTimer()

        def run():
            with torch.inference_mode():
                if mode == "generic":
                    return {"generic": model.restore(lq, lm)}
                model.clear_reference_cache()
                o = model.training_outputs(lq, lm, [refs], [ref_lm])
                return {"generic": o["restored_generic"], "specific": o["restored"]}

        run()  # warm-up, then time with the stage hooks installed
        timer.install(model)
        times = []
        for _ in range(repeats):
            t1 = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - t1)
        stages = {k: v / repeats for k, v in timer.t.items()}
        stages["other"] = max(statistics.mean(times) - sum(stages.values()), 0.0)
        if mode == "specific5":  # dictionary already built for these references (bench restore, further faces)
            with torch.inference_mode():
                model.training_outputs(lq, lm, [refs], [ref_lm])
                t1 = time.perf_counter()
                model.training_outputs(lq, lm, [refs], [ref_lm])
                cached = time.perf_counter() - t1
    else:
        import importlib.util

        from baselines.components import component_boxes

        spec = importlib.util.spec_from_file_location("authors_dmdnet", authors_code / "models" / "DMDNet.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        net = mod.DMDNet()  # what main_test.py does: build, torch.load, strict load, eval
        net.load_state_dict(torch.load(work / "weights.pt", map_location="cpu", weights_only=True), strict=True)
        net.eval()
        build_s = time.perf_counter() - t
        loc = torch.from_numpy(component_boxes(lm.numpy(), 512)).float()  # (1, 4, 4): LE, RE, nose, mouth
        ref_loc = torch.from_numpy(component_boxes(ref_lm.numpy(), 512)).float()

        def run():
            with torch.no_grad():
                if mode == "generic":
                    g, _ = net(lq=lq * 2 - 1, loc=loc)
                    return {"generic": (g + 1) / 2}
                sp = net.generate_specific_dictionary(sp_imgs=refs * 2 - 1, sp_locs=ref_loc)
                g, s = net(lq=lq * 2 - 1, loc=loc, sp_256=sp[0], sp_128=sp[1], sp_64=sp[2])
                return {"generic": (g + 1) / 2, "specific": (s + 1) / 2}

        times, out = _timed(run, repeats)
    torch.save({k: v.float().contiguous() for k, v in out.items()}, work / f"out_{impl}_{mode}_{threads}_{allocator[:4]}.pt")
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
    return {"impl": impl, "mode": mode, "threads": threads, "times": times, "median": statistics.median(times),
            "stages": stages, "cached_dictionary_s": cached, "rss_gb": rss_gb, "build_s": build_s,
            "conv_gflops": [gflops_before, _conv_gflops(threads)], "load": [load0, os.getloadavg()[0]],
            "flops": _flops(mode), "allocator": allocator,
            "outputs": str(work / f"out_{impl}_{mode}_{threads}_{allocator[:4]}.pt")}


# ------------------------------------------------------------------------------------------------ driver
def prepare(work: Path) -> None:
    """The shared weights (official key layout, seed 0) and inputs."""
    import torch

    from baselines import create_model
    from baselines.landmarks import mean_face_landmarks
    from peers.spectral_norm import set_spectral_gain

    torch.manual_seed(0)
    model = create_model("dmdnet", config="paper")
    set_spectral_gain(model, 1.3)  # every path reaches the output, so the output comparison has power
    torch.save(model.state_dict(), work / "weights.pt")
    g = torch.Generator().manual_seed(0)
    lm = torch.from_numpy(mean_face_landmarks(512))[None]
    torch.save({"lq": torch.rand(1, 3, 512, 512, generator=g), "landmarks": lm,
                "refs": torch.rand(N_REFS, 3, 512, 512, generator=g), "ref_landmarks": lm.repeat(N_REFS, 1, 1)},
               work / "inputs.pt")


def run_case(impl: str, mode: str, threads: int, repeats: int, work: Path, memory_format: str = "channels_last",
             allocator: str = "reuse", authors_code: Path | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    env.pop("CELEBREF_CPU_ALLOCATOR", None)
    if allocator == "default":
        env["CELEBREF_CPU_ALLOCATOR"] = "default"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", impl, mode, str(work), "--threads", str(threads),
           "--repeats", str(repeats), "--memory-format", memory_format]
    if authors_code:
        cmd += ["--authors-code", str(authors_code)]
    t = time.time()
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"case {impl}/{mode}/{threads}/{allocator} failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["wall_s"] = time.time() - t
    out["memory_format"] = memory_format if impl == "ours" else "contiguous"
    return out


def max_diff(a: dict, b: dict) -> dict[str, float]:
    import torch

    oa, ob = torch.load(a["outputs"], weights_only=True), torch.load(b["outputs"], weights_only=True)
    return {k: float((oa[k] - ob[k]).abs().max()) for k in oa}


def _alloc(r: dict) -> str:
    return "reuse freed memory" if r["allocator"].startswith("glibc") else "glibc default"


def render(pairs: list[tuple[dict, dict | None]], repeats: int, authors_code: Path | None) -> str:
    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    measured = authors_code is not None
    peer = (f"the authors' `models/DMDNet.py` from {authors_code}, measured in this run" if measured
            else f"{AUTHORS['source']}; not measured in this run (no --authors-code)")
    lines = [
        "# DMDNet CPU benchmark (paper configuration, one 512x512 face)",
        "",
        (f"`benchmarks/bench_dmdnet.py`, {time.strftime('%Y-%m-%d %H:%M')}; torch {torch.__version__}, "
         f"{os.cpu_count()} CPU cores ({cpu}). Same weights (official key layout, random values) and inputs for "
         f"both implementations. Median of {repeats} timed runs after 1 warm-up, each case in its own process; "
         f"peak RSS includes loading the checkpoint. Ours: conv weights in "
         f"{pairs[0][0].get('memory_format', 'channels_last')} order, as `bench restore` builds the model."),
        "",
        f"Authors: {peer}.",
        "",
        ("| case | threads | CPU allocator | ours (s) | authors (s) | ours / authors | ours peak RSS (GB) | "
         "authors peak RSS (GB) | RSS ratio | max abs output difference | achieved GFLOP/s (ours) | "
         "bare-conv GFLOP/s now | load avg |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ours, theirs in pairs:
        label = "generic" if ours["mode"] == "generic" else f"specific, {N_REFS} refs (dictionary + both outputs)"
        if theirs is not None:
            t_ref, rss_ref, q = theirs["median"], theirs["rss_gb"], ""
            diff = max_diff(ours, theirs)
            diff_s = ", ".join(f"{k} {v:.1e}" for k, v in diff.items())
        else:
            t_ref, rss_ref, q, diff_s = AUTHORS[ours["mode"]], AUTHORS["rss_gb"], " (quoted)", "n/a"
        gfs = f"{ours['flops'] / ours['median'] / 1e9:.0f}" if ours.get("flops") else "?"
        conv = "/".join(f"{v:.0f}" for v in ours["conv_gflops"])
        load = "/".join(f"{v:.1f}" for v in ours["load"] + (theirs["load"] if theirs else []))
        lines.append(f"| {label} | {ours['threads']} | {_alloc(ours)} | {ours['median']:.2f} | {t_ref:.2f}{q} | "
                     f"**{ours['median'] / t_ref:.2f}x** | {ours['rss_gb']:.2f} | {rss_ref:.2f}{q} | "
                     f"{ours['rss_gb'] / rss_ref:.2f}x | {diff_s} | {gfs} | {conv} | {load} |")
    lines += ["", ("Ratios > 1 mean ours is slower / uses more memory. 'bare-conv GFLOP/s now': a lone 64->64 3x3 "
              "convolution at 256x256 measured just before / after our case; 'load avg': 1-minute load average "
              "before / after our case (then the authors'). 'CPU allocator': 'reuse freed memory' is what "
              "`bench restore` / `evaluate` / `train` set up for CPU runs (bfrcore.cpu_allocator: glibc "
              "M_MMAP_MAX=0, M_TRIM_THRESHOLD=2GiB, so full-size activations are not page-faulted again on every "
              "layer); 'glibc default' is the same process with CELEBREF_CPU_ALLOCATOR=default. Both "
              "implementations run under the same setting in each row."), ""]
    for ours, theirs in pairs:
        if ours.get("flops"):
            lines.append(f"- {ours['mode']}, {ours['threads']} thread(s), {_alloc(ours)}: "
                         f"{ours['flops'] / 1e9:.0f} GFLOP per forward (counted on the meta device).")
        if theirs is not None:
            lines.append(f"- {ours['mode']}, {_alloc(ours)}: model construction + checkpoint load "
                         f"{ours['build_s']:.1f} s ours, {theirs['build_s']:.1f} s authors'.")
        if ours["cached_dictionary_s"] is not None:
            lines.append(f"- specific, {ours['threads']} thread(s), {_alloc(ours)}, dictionary already cached "
                         f"(bench restore, further faces with the same --refs): {ours['cached_dictionary_s']:.2f} s.")
    lines += ["", "## Per-stage profile of ours (mean seconds per forward, hooks on the top-level modules)", "",
              "| case | threads | allocator | " + " | ".join(STAGES) + " | dominant |",
              "|---|---|---|" + "---|" * (len(STAGES) + 1)]
    for ours, _ in pairs:
        st = ours["stages"]
        tot = sum(st.values()) or 1.0
        dom = max(st, key=st.get)
        lines.append(f"| {ours['mode']} | {ours['threads']} | {_alloc(ours)} | " + " | ".join(
            f"{st[s]:.2f} ({100 * st[s] / tot:.0f}%)" for s in STAGES) + f" | {dom} |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--authors-code", type=Path, default=None,
                    help="a checkout of github.com/csxmli2016/DMDNet (its models/DMDNet.py is imported and timed)")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", nargs="+", default=["generic", "specific5"], choices=["generic", "specific5"])
    ap.add_argument("--allocators", nargs="+", default=["reuse", "default"], choices=["reuse", "default"],
                    help="CPU allocator setups to time: reuse (what the CLI uses), default (glibc as is)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_dmdnet.md")
    ap.add_argument("--memory-format", choices=["channels_last", "contiguous"], default="channels_last",
                    help="our conv weights' memory order (bench restore uses channels_last)")
    ap.add_argument("--worker", nargs=3, metavar=("IMPL", "MODE", "WORKDIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.authors_code is not None and not (args.authors_code / "models" / "DMDNet.py").is_file():
        ap.error(f"--authors-code {args.authors_code}: no models/DMDNet.py there (git clone "
                 "https://github.com/csxmli2016/DMDNet)")
    if args.worker:
        sys.path.insert(0, str(ROOT))
        impl, mode, work = args.worker
        print(json.dumps(worker(impl, mode, args.threads[0], args.repeats, Path(work), args.memory_format,
                                args.authors_code)))
        return 0
    import tempfile

    sys.path.insert(0, str(ROOT))
    pairs = []
    with tempfile.TemporaryDirectory(prefix="bench_dmdnet_") as tmp:
        work = Path(tmp)
        prepare(work)
        for threads in args.threads:
            for allocator in args.allocators:
                for mode in args.modes:
                    res = {}
                    for impl in ("ours", "authors") if args.authors_code else ("ours",):
                        print(f"running {impl} {mode}, {threads} thread(s), allocator {allocator} ...",
                              file=sys.stderr, flush=True)
                        res[impl] = run_case(impl, mode, threads, args.repeats, work, args.memory_format, allocator,
                                             args.authors_code)
                        print(f"  median {res[impl]['median']:.2f} s, peak RSS {res[impl]['rss_gb']:.2f} GB "
                              f"({res[impl]['wall_s']:.0f} s)", file=sys.stderr, flush=True)
                    pairs.append((res["ours"], res.get("authors")))
        text = render(pairs, args.repeats, args.authors_code)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
