"""Same numbers on any x86-64 CPU: run the numeric core under several BLAS / SIMD instruction sets and compare.

The libraries pick their kernels at run time from the CPU: numpy/scipy's OpenBLAS (SkylakeX on an AVX-512 machine,
Haswell on AVX2), OpenCV's own bundled OpenBLAS and its SIMD dispatch (AVX2, AVX512-SKX), torch's MKL (Intel and
AMD take different paths), oneDNN (convolutions) and ATen's vectorised kernels. dlib (dlib-bin) links no BLAS and
has no run-time dispatch: it computes the same everywhere given the same input. Each :data:`SETTINGS` entry is a
set of environment variables that makes this machine take another CPU's kernels; the check runs
:func:`compute_core` once per setting in a fresh subprocess (the variables are read when a library loads) and
:func:`compare` the reports:

- metrics (PSNR, SSIM, MS-SSIM, NIQE, LMD, identity with dlib; FID/KID/LPIPS/… when their weights are present,
  else listed as unavailable with the reason) on real pairs (CelebRef-HQ faces vs their degraded versions, and
  pyiqa's calibration pairs, whose flat regions caught the NIQE rounding issue): within :data:`TOL_METRIC`;
- degraded test sets (``generate_testset`` of every registered preset on a mini dataset): identical hashes;
- a small ``celebref build`` (a handful of aligned faces and whole photos): identical ``dataset_hash``; the spread
  of its landmarks and embeddings is recorded;
- every registered model's forward (tiny config, seeded init, real degraded face, references, landmarks):
  within :data:`TOL_MODEL`.

Each report also records which kernels its process took (:func:`kernels`), so a setting that did not reach a
library is seen. Usage: ``python scripts/any_cpu_check.py --out report.json`` (this process, this environment) or
``python scripts/any_cpu_check.py --settings default,openblas-haswell,... --out spreads.json`` (one subprocess per
setting, then the comparison; exit 1 when a tolerance is broken). docs/evaluation.md "Same numbers on any CPU".
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: metric values may differ by at most this much between two settings (absolute)
TOL_METRIC = 1e-6
#: model outputs (images in [0, 1]) may differ by at most this much (absolute, per element)
TOL_MODEL = 1e-5

_OPENCV_NO_AVX512 = "AVX512-SKX,AVX512-CLX,AVX512-ICL"
#: placeholder for the path of the library built by :func:`fake_intel_mkl`
FAKE_INTEL = "@fake_intel_mkl"
#: name -> environment: each makes this machine take the kernels another x86-64 CPU would take
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "openblas-haswell": {"OPENBLAS_CORETYPE": "Haswell"},  # numpy/scipy and OpenCV's OpenBLAS on an AVX2 CPU
    "openblas-zen": {"OPENBLAS_CORETYPE": "Zen"},
    "openblas-skylakex": {"OPENBLAS_CORETYPE": "SkylakeX"},
    # torch's MKL: on an AMD CPU it takes its non-Intel path whatever MKL_ENABLE_INSTRUCTIONS says; with
    # mkl_serv_intel_cpu_true() answering 1 (LD_PRELOAD, see fake_intel_mkl) it takes the Intel paths
    "mkl-avx2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "mkl-avx512": {"MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    "mkl-intel": {"LD_PRELOAD": FAKE_INTEL},
    "mkl-intel-avx2": {"LD_PRELOAD": FAKE_INTEL, "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "torch-avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},  # ATen + oneDNN convolutions
    "opencv-avx2": {"OPENCV_CPU_DISABLE": _OPENCV_NO_AVX512},
    "opencv-sse4": {"OPENCV_CPU_DISABLE": _OPENCV_NO_AVX512 + ",AVX2,FP16,AVX"},
    "all-avx2": {"OPENBLAS_CORETYPE": "Haswell", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
                 "ONEDNN_MAX_CPU_ISA": "AVX2", "OPENCV_CPU_DISABLE": _OPENCV_NO_AVX512},
    "intel-avx2": {"LD_PRELOAD": FAKE_INTEL, "OPENBLAS_CORETYPE": "Haswell", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                   "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                   "OPENCV_CPU_DISABLE": _OPENCV_NO_AVX512},
}
#: what tests/test_any_cpu.py runs: this machine's kernels; numpy's OpenBLAS on Haswell; every library at AVX2
#: (ATen, oneDNN, OpenCV, OpenBLAS); MKL's Intel path (an Intel AVX-512 machine); and an Intel AVX2 machine
TEST_SETTINGS = ("default", "openblas-haswell", "all-avx2", "mkl-intel", "intel-avx2")

#: CelebRef-HQ example identity / images used for the metric pairs and the model inputs
_PAIR_IMAGES = (("00075", 1), ("00075", 2), ("00146", 1), ("00146", 2))
_PAIR_PRESET, _PAIR_SEED = "celebref-x8", 7
_TESTSET_LIMIT = 2  # images per preset (test split of the mini dataset)
_THREADS = 1


# ----------------------------------------------------------------------------------------------- encoding
def encode_array(a: np.ndarray) -> dict:
    """A float array as JSON: shape + base64 of its float64 bytes (exact)."""
    a = np.ascontiguousarray(np.asarray(a, np.float64))
    return {"shape": list(a.shape), "f64": base64.b64encode(a.tobytes()).decode()}


def decode_array(d: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["f64"]), np.float64).reshape(d["shape"])


# ----------------------------------------------------------------------------------------------- the core
def _examples_root(shared: Path) -> Path:
    from tests import helpers

    return shared / "faces" / helpers.CELEBREF_EXAMPLES


def _pairs(examples: Path):
    from bfrcore.imageio import read_image
    from degradations.pipeline import degrade_image, item_seed

    refs = examples / "RefsImg"
    out = []
    for ident, n in _PAIR_IMAGES:
        hq = read_image(refs / ident / f"{n}.png")
        lq, _ = degrade_image(hq, _PAIR_PRESET, item_seed(_PAIR_SEED, f"{ident}-{n}"))
        others = sorted((p for p in (refs / ident).glob("*.png") if p.stem != str(n)), key=lambda p: int(p.stem))[:2]
        out.append((f"{ident}-{n}", hq, lq, [read_image(p) for p in others], [f"{ident}-{p.stem}" for p in others]))
    return out


#: pyiqa's calibration pairs (shared/oracles): I19 has flat regions where rounding noise once decided NIQE
_CALIBRATION = ("I03", "I04", "I06", "I08", "I19")


def _calibration_pairs(shared: Path):
    from bfrcore.imageio import read_image

    root = shared / "oracles" / "pyiqa_calibration"
    if not (root / "ref_dir").is_dir():
        return []
    return [(n, read_image(root / "ref_dir" / f"{n}.bmp"), read_image(root / "dist_dir" / f"{n}.bmp"))
            for n in _CALIBRATION]


def compute_metrics(examples: Path, shared: Path | None = None) -> dict:
    """Every registered metric whose weights are present, on real pairs: CelebRef-HQ faces vs their degraded
    versions (``faces/<column>``) and, when present, pyiqa's calibration pairs (``calibration/<column>``; image
    metrics only: no identity or distribution metrics on non-faces). The rest listed as unavailable."""
    from evaluation.metrics import Batch, resolve_metrics

    pairs = _pairs(examples)
    res = resolve_metrics("all")
    batches = {"faces": Batch(image_ids=[p[0] for p in pairs], pred=[p[2] for p in pairs], gt=[p[1] for p in pairs],
                              refs=[p[3] for p in pairs], ref_ids=[p[4] for p in pairs])}
    cal = _calibration_pairs(shared) if shared is not None else []
    if cal:
        batches["calibration"] = Batch(image_ids=[c[0] for c in cal], pred=[c[2] for c in cal],
                                       gt=[c[1] for c in cal])
    values: dict[str, list[float]] = {}
    failed: dict[str, str] = {}
    for m in res.metrics:
        for bname, batch in batches.items():
            if bname != "faces" and m.kind in ("identity", "distribution"):
                continue
            try:
                m.setup("cpu")
                if m.kind == "distribution":
                    m.reset()
                    m.update(batch.pred, real=False)
                    m.update(batch.gt, real=True)
                    out = {k: [float(v)] for k, v in m.compute_set().items()
                           if k not in ("n", "n_real") and v is not None}
                else:
                    out = {k: [float(x) for x in np.asarray(v, np.float64)] for k, v in m.compute(batch).items()}
            except Exception as e:  # noqa: BLE001 - recorded; a failure breaks the comparison (what runs must run everywhere)
                failed[f"{bname}/{m.name}"] = f"{type(e).__name__}: {e}"
                continue
            values.update({f"{bname}/{k}": v for k, v in out.items()})
    return {"values": values, "unavailable": dict(sorted(res.unavailable.items())), "failed": failed,
            "images": {b: batch.image_ids for b, batch in batches.items()},
            "pairs": f"faces: {_PAIR_PRESET} seed {_PAIR_SEED}; calibration: pyiqa dist_dir vs ref_dir"}


def compute_testsets(mini_dataset: Path, work: Path) -> dict:
    """``testset_hash`` of every registered preset (``_TESTSET_LIMIT`` images of the test split)."""
    from degradations.presets import list_presets
    from degradations.testset import generate_testset

    out = {}
    for preset in list_presets():
        r = generate_testset(mini_dataset, preset, 0, work / f"ts-{preset}", limit=_TESTSET_LIMIT)
        out[preset] = r.testset_hash
    return out


def compute_build(shared: Path, work: Path) -> dict:
    """A small ``celebref build`` (4 aligned CelebRef-HQ faces of two people + the face_recognition Obama/Biden
    photos, 1 worker): its dataset_hash, plus landmarks and embeddings whose spread is recorded."""
    from celebref.pipeline import build_dataset, parse_config
    from tests.celebref import build_support

    faces = shared / "faces"
    src = work / "build_src"
    refs = _examples_root(shared) / "RefsImg"
    for ident in ("00075", "00089"):
        (src / "chq" / ident).mkdir(parents=True)
        for f in sorted((refs / ident).glob("*.png"))[:2]:
            (src / "chq" / ident / f.name).symlink_to(f)
    rows = build_support.shared_rows(faces, sources={"face_recognition"}, kinds={"whole_photo"})
    build_support.link_tree([r for r in rows if r["identity"] in ("obama", "biden")], faces, src / "photos",
                            by="identity", per_group=2)
    cfg = parse_config({**build_support.SMALL_CFG, "identity": {"min_images": 1}})
    r = build_dataset([f"celebrefhq:{src / 'chq'}", f"folder:{src / 'photos'}"], work / "built", cfg, workers=1)
    m = r.manifest.sort_values("face_id")
    faces_m = m[m["face_index"].fillna(-1) >= 0]
    lm = np.asarray([np.asarray(v, np.float64).reshape(-1) for v in faces_m["landmarks"] if v is not None])
    emb: dict = {}
    for rec in r.stage_runs["embed"].records.values():
        emb.update((rec.get("result") or {}).get("embeddings") or {})
    e = np.asarray([emb[f] for f in sorted(emb)], np.float64)
    return {"dataset_hash": r.info["dataset_hash"], "kept": int(m["kept"].sum()), "faces": len(faces_m),
            "landmarks": encode_array(lm), "embeddings": encode_array(e)}


def compute_models(examples: Path) -> dict:
    """Every registered model: tiny config, ``torch.manual_seed(0)`` init, eval, restore of a real degraded face
    with two references and the authors' landmarks (scaled to the model's size)."""
    import torch

    from baselines import create_model, list_models
    from bfrcore.imageio import read_image
    from bfrcore.tensor_images import resize_uint8, to_tensor
    from degradations.pipeline import degrade_image, item_seed
    from tests.helpers import read_landmark_txt

    refs_dir, lm_dir = examples / "RefsImg", examples / "RefsLandmark"
    hq = read_image(refs_dir / "00089" / "1.png")
    lq, _ = degrade_image(hq, _PAIR_PRESET, item_seed(_PAIR_SEED, "00089-1"))
    ref_imgs = [read_image(refs_dir / "00089" / f"{n}.png") for n in (3, 4)]
    ref_lms = [read_landmark_txt(lm_dir / "00089" / f"{n}.png.txt") for n in (3, 4)]
    lq_lm = read_landmark_txt(lm_dir / "00089" / "1.png.txt")
    out = {}
    for name in list_models():
        torch.manual_seed(0)
        model = create_model(name, "tiny").eval()
        s = model.input_size
        k = s / lq.shape[1]
        x = to_tensor([resize_uint8(lq, s)])
        kwargs = {}
        if model.needs_landmarks or model.uses_landmarks or model.uses_references or model.needs_references:
            kwargs["landmarks"] = torch.from_numpy(lq_lm * k)[None].float()
        if model.uses_references or model.needs_references:
            kwargs["refs"] = [to_tensor([resize_uint8(r, s) for r in ref_imgs])]
            kwargs["ref_landmarks"] = [torch.from_numpy(np.stack(ref_lms) * k).float()]
        with torch.no_grad():
            y = model.restore(x, **kwargs)
        out[name] = encode_array(y.double().numpy())
    return out


def kernels() -> dict:
    """What the libraries chose in this process: OpenBLAS core of each loaded OpenBLAS (threadpoolctl, when
    installed), ATen's CPU capability, OpenCV's dispatch line ('?' = disabled) and whether MKL's Intel check
    (``mkl_serv_intel_cpu_true``, looked up globally as MKL's own calls resolve it) answers 1."""
    import ctypes

    import cv2
    import torch

    out: dict = {"torch_capability": torch.backends.cpu.get_cpu_capability(),
                 "opencv": cv2.getCPUFeaturesLine()}
    try:
        from threadpoolctl import threadpool_info

        out["openblas"] = sorted(f"{Path(i['filepath']).name}:{i.get('architecture')}" for i in threadpool_info()
                                 if i.get("internal_api") == "openblas")
    except ImportError:
        out["openblas"] = None
    out["mkl_intel_cpu"] = None
    for lib in (None, str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so")):
        try:  # a preloaded definition first; else torch's own (torch loads its libraries RTLD_LOCAL)
            out["mkl_intel_cpu"] = int(ctypes.CDLL(lib).mkl_serv_intel_cpu_true())
            break
        except (AttributeError, OSError):
            continue
    return out


def compute_core(shared: Path, mini_dataset: Path | None = None, parts: tuple[str, ...] = ("metrics", "testsets",
                                                                                          "build", "models")) -> dict:
    """Run the numeric core in this process; a JSON-able dict (arrays as :func:`encode_array`)."""
    import torch

    torch.set_num_threads(_THREADS)
    examples = _examples_root(shared)
    report: dict = {"env": {k: os.environ.get(k) for k in sorted({k for s in SETTINGS.values() for k in s})},
                    "timings_s": {}}
    with tempfile.TemporaryDirectory(prefix="any_cpu_") as tmp:
        work = Path(tmp)
        import cv2  # noqa: F401  (loads OpenCV's OpenBLAS, so kernels() sees it)

        report["kernels"] = kernels()
        if "testsets" in parts and mini_dataset is None:
            from tests.helpers import make_mini_dataset

            mini_dataset = make_mini_dataset(examples, work / "mini")
        for part in parts:
            t0 = time.perf_counter()
            if part == "metrics":
                report["metrics"] = compute_metrics(examples, shared)
            elif part == "testsets":
                report["testsets"] = compute_testsets(Path(mini_dataset), work)
            elif part == "build":
                report["build"] = compute_build(shared, work)
            elif part == "models":
                report["models"] = compute_models(examples)
            else:
                raise ValueError(f"unknown part {part!r}")
            report["timings_s"][part] = round(time.perf_counter() - t0, 2)
    return report


# ----------------------------------------------------------------------------------------------- comparing
def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    both_nan = np.isnan(a) & np.isnan(b)
    d = np.abs(a - b)
    d[both_nan] = 0.0
    d[np.isnan(d)] = np.inf  # NaN on one side only
    return float(d.max()) if d.size else 0.0


def compare(reports: dict[str, dict], baseline: str = "default") -> dict:
    """Spreads of every quantity against ``baseline`` and the broken tolerances.

    Returns {"spreads": {setting: {quantity: max |Δ| or "same"/"DIFFERENT"}}, "violations": [text, ...]}.
    Quantities: ``metric:<column>``, ``testset:<preset>``, ``build:dataset_hash``, ``build:landmarks`` /
    ``build:embeddings`` (recorded, not asserted: the hash decides), ``model:<name>``."""
    base = reports[baseline]
    spreads: dict[str, dict] = {}
    violations: list[str] = []
    for name, rep in reports.items():
        if name == baseline:
            continue
        s: dict = {}
        if "metrics" in base:
            bm, rm = base["metrics"], rep.get("metrics", {})
            for what in ("failed",):
                for k, why in {**bm.get(what, {}), **rm.get(what, {})}.items():
                    violations.append(f"{name}: metric {k} failed: {why}")
            if set(bm["unavailable"]) != set(rm.get("unavailable", {})):
                violations.append(f"{name}: unavailable metrics differ")
            for col, v in bm["values"].items():
                d = _max_abs(np.asarray(v, np.float64), np.asarray(rm.get("values", {}).get(col, []), np.float64))
                s[f"metric:{col}"] = d
                if not d <= TOL_METRIC:
                    violations.append(f"{name}: metric {col} moved by {d:.3g} > {TOL_METRIC:g}")
        if "testsets" in base:
            for preset, h in base["testsets"].items():
                same = rep.get("testsets", {}).get(preset) == h
                s[f"testset:{preset}"] = "same" if same else "DIFFERENT"
                if not same:
                    violations.append(f"{name}: testset_hash of {preset} differs")
        if "build" in base:
            b, r = base["build"], rep.get("build", {})
            same = r.get("dataset_hash") == b["dataset_hash"]
            s["build:dataset_hash"] = "same" if same else "DIFFERENT"
            if not same:
                violations.append(f"{name}: build dataset_hash differs ({b['dataset_hash'][:12]} vs "
                                  f"{str(r.get('dataset_hash'))[:12]})")
            for k in ("landmarks", "embeddings"):
                s[f"build:{k}"] = _max_abs(decode_array(b[k]), decode_array(r[k])) if k in r else float("inf")
        if "models" in base:
            for m, enc in base["models"].items():
                d = (_max_abs(decode_array(enc), decode_array(rep["models"][m]))
                     if m in rep.get("models", {}) else float("inf"))
                s[f"model:{m}"] = d
                if not d <= TOL_MODEL:
                    violations.append(f"{name}: model {m} output moved by {d:.3g} > {TOL_MODEL:g}")
        spreads[name] = s
    return {"baseline": baseline, "spreads": spreads, "violations": violations}


# ----------------------------------------------------------------------------------------------- subprocesses
_FAKE_INTEL_C = "int mkl_serv_intel_cpu_true(void) { return 1; }\nint mkl_serv_intel_cpu(void) { return 1; }\n"


def fake_intel_mkl(folder: Path) -> Path | None:
    """Build a shared library whose ``mkl_serv_intel_cpu_true`` answers 1: preloaded, it makes the MKL inside
    torch take its Intel code paths on an AMD CPU (None when no C compiler is found)."""
    import shutil

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    src, lib = folder / "fake_intel_mkl.c", folder / "libfake_intel_mkl.so"
    if not lib.is_file():
        src.write_text(_FAKE_INTEL_C)
        p = subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], capture_output=True, text=True,
                           check=False)
        if p.returncode != 0:
            return None
    return lib


def needs_fake_intel(setting: str) -> bool:
    return SETTINGS[setting].get("LD_PRELOAD") == FAKE_INTEL


def child_env(setting: str, threads: int = _THREADS, fake_intel: Path | None = None) -> dict[str, str]:
    """This process's environment with ``setting`` applied (and every other setting's variables removed)."""
    env = dict(os.environ)
    for s in SETTINGS.values():
        for k in s:
            env.pop(k, None)
    env.update(SETTINGS[setting])
    if needs_fake_intel(setting):
        if fake_intel is None:
            raise ValueError(f"setting {setting!r} needs the fake-Intel MKL library (fake_intel_mkl)")
        env["LD_PRELOAD"] = str(fake_intel)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(threads)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("CELEBREF_PROGRESS", "0")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_setting(setting: str, out: Path, shared: Path, mini_dataset: Path | None = None,
                parts: tuple[str, ...] | None = None, timeout: float = 600,
                fake_intel: Path | None = None) -> dict:
    """One subprocess under ``setting``; its report (raises RuntimeError with its stderr on failure)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--out", str(out), "--shared-data", str(shared)]
    if mini_dataset is not None:
        cmd += ["--mini-dataset", str(mini_dataset)]
    if parts:
        cmd += ["--parts", ",".join(parts)]
    p = subprocess.run(cmd, env=child_env(setting, fake_intel=fake_intel), cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"setting {setting!r} failed (exit {p.returncode}):\n{p.stderr[-4000:]}")
    return json.loads(Path(out).read_text())


def _fmt(v) -> str:
    return v if isinstance(v, str) else ("0" if v == 0 else f"{v:.2g}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="report JSON")
    ap.add_argument("--settings", default=None,
                    help=f"comma list of settings to run as subprocesses and compare (known: {', '.join(SETTINGS)}; "
                         "'test' = the test's set); without it: compute in this process")
    ap.add_argument("--shared-data", default=None, help="the shared data root (default: tests.helpers)")
    ap.add_argument("--mini-dataset", default=None, help="a mini dataset folder (default: made from the examples)")
    ap.add_argument("--parts", default="metrics,testsets,build,models")
    a = ap.parse_args(argv)
    from tests import helpers

    shared = Path(a.shared_data) if a.shared_data else helpers.shared_data_root()
    if shared is None or not (shared / "faces").is_dir():
        print(f"error: shared data not found ({helpers.SHARED_HINT})", file=sys.stderr)
        return 2
    parts = tuple(p for p in a.parts.split(",") if p)
    out = Path(a.out)
    if not a.settings:
        report = compute_core(shared, Path(a.mini_dataset) if a.mini_dataset else None, parts)
        out.write_text(json.dumps(report, sort_keys=True))
        return 0
    names = list(TEST_SETTINGS) if a.settings == "test" else [s for s in a.settings.split(",") if s]
    unknown = [s for s in names if s not in SETTINGS]
    if unknown or "default" not in names:
        print(f"error: --settings must include 'default' and only known names; unknown: {unknown}", file=sys.stderr)
        return 2
    reports = {}
    with tempfile.TemporaryDirectory(prefix="any_cpu_runs_") as tmp:
        fake = fake_intel_mkl(Path(tmp)) if any(needs_fake_intel(s) for s in names) else None
        for s in names:
            if needs_fake_intel(s) and fake is None:
                print(f"{s}: skipped (no C compiler for the fake-Intel MKL library)", file=sys.stderr)
                continue
            t0 = time.perf_counter()
            reports[s] = run_setting(s, Path(tmp) / f"{s}.json", shared,
                                     Path(a.mini_dataset) if a.mini_dataset else None, parts, fake_intel=fake)
            print(f"{s}: {time.perf_counter() - t0:.1f} s {reports[s]['timings_s']}", file=sys.stderr)
    result = compare(reports)
    result["settings"] = {s: SETTINGS[s] for s in names}
    out.write_text(json.dumps(result, indent=1, sort_keys=True))
    for s, q in result["spreads"].items():
        print(s + ": " + ", ".join(f"{k}={_fmt(v)}" for k, v in q.items()))
    for v in result["violations"]:
        print("VIOLATION", v)
    return 1 if result["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
