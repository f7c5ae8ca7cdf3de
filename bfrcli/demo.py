"""`make demo`: the whole chain — build → degrade → train every tiny model → evaluate all → leaderboard → publish
(dry run) → load-back check — on an embedded default or on your photos (``--source``), offline, in about 20 minutes
on 2 CPU cores.

The embedded default is real photos, no synthetic images: the sample photos that ship inside installed packages
(InsightFace's group photo ``t1.jpg`` and ``Tom_Hanks_54745.png``, scikit-image's ``astronaut.png``, Matplotlib's
``grace_hopper.jpg``) plus the test photos of the ``face_recognition`` 1.3.0 source distribution on PyPI (MIT;
several photos of one person, which reference-based restoration needs), fetched and hash-checked together with the
package installs (``--fetch-only``) and kept in the suite cache.

Every step calls the same command-line entry points a user types, so the demo is also an end-to-end check. Small
sample photos are accepted with a relaxed demo build config (``bfrcli/demo_build.yaml``); the defaults of
``celebref build`` are the CelebRef-HQ-style thresholds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import shutil
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("bfrcli.demo")

#: photos shipped inside installed packages: (import name, path inside the package, demo file name)
PACKAGE_PHOTOS = (
    ("insightface", "data/images/t1.jpg", "t1.jpg"),
    ("insightface", "data/images/Tom_Hanks_54745.png", "Tom_Hanks_54745.png"),
    ("skimage", "data/astronaut.png", "astronaut.png"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "grace_hopper.jpg"),
)
#: the face_recognition 1.3.0 sdist (PyPI publishes this sha256) and the test photos taken from it
FACE_RECOGNITION_SDIST = (
    ("https://files.pythonhosted.org/packages/6c/49/75dda409b94841f01cbbc34114c9b67ec618265084e4d12d37ab838f4fd3/"
     "face_recognition-1.3.0.tar.gz"),
    "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
)
SDIST_PHOTOS = {
    "face_recognition-1.3.0/tests/test_images/obama.jpg": "obama/obama.jpg",
    "face_recognition-1.3.0/tests/test_images/obama2.jpg": "obama/obama2.jpg",
    "face_recognition-1.3.0/tests/test_images/obama3.jpg": "obama/obama3.jpg",
    "face_recognition-1.3.0/tests/test_images/obama_partial_face.jpg": "obama/obama_partial_face.jpg",
    "face_recognition-1.3.0/tests/test_images/obama_partial_face2.jpg": "obama/obama_partial_face2.jpg",
    "face_recognition-1.3.0/tests/test_images/biden.jpg": "biden.jpg",
}
#: models trained and scored by the demo (every trainable model of the zoo, tiny configs) and the trivial ones
TRAINED_MODELS = ("dmdnet", "dfdnet", "asffnet", "gfrnet", "gwainet")
TRIVIAL_MODELS = ("bicubic", "ref_colormatch")
PRESETS = ("celebref-x4", "celebref-x8")
REPO_ROOT = Path(__file__).resolve().parents[1]


def _cache_dir() -> Path:
    from bfrcore.weights import cache_dir

    return cache_dir().parent / "demo"


def fetch_sample_photos(timeout: float = 60.0) -> Path:
    """Download (once) and verify the face_recognition sdist; return the cached archive."""
    from bfrcore.weights.registry import download_verified

    url, sha = FACE_RECOGNITION_SDIST
    return download_verified(url, sha, _cache_dir() / Path(url).name, timeout=timeout)


def prepare_embedded_source(dest: Path) -> tuple[Path, list[str]]:
    """Write the embedded default photos into ``dest`` (a folder tree: ``obama/`` gives a name label; the rest sit at
    the root, unlabelled). Returns (dest, notes)."""
    notes: list[str] = []
    dest.mkdir(parents=True, exist_ok=True)
    for pkg, rel, name in PACKAGE_PHOTOS:
        spec = importlib.util.find_spec(pkg)
        src = Path(next(iter(spec.submodule_search_locations))) / rel if spec and spec.submodule_search_locations else None
        if src is None or not src.is_file():
            notes.append(f"{pkg}/{rel} not found; skipped")
            continue
        shutil.copyfile(src, dest / name)
    archive = _cache_dir() / Path(FACE_RECOGNITION_SDIST[0]).name
    if not archive.is_file():
        try:
            archive = fetch_sample_photos()
        except Exception as e:  # noqa: BLE001 - offline: continue with the package photos only
            notes.append(f"face_recognition sample photos unavailable ({e}); reference-based models will be "
                         "skipped for lack of several photos of one person")
            return dest, notes
    from bfrcore.safepath import safe_join

    with tarfile.open(archive) as tf:
        for member, rel in SDIST_PHOTOS.items():
            f = tf.extractfile(member)
            if f is None:
                continue
            out = safe_join(dest, rel)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(f.read())
    return dest, notes


@dataclass
class DemoReport:
    out: Path
    steps: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def step(self, name: str, rc: int, seconds: float, **extra) -> None:
        self.steps.append({"step": name, "rc": rc, "seconds": round(seconds, 1), **extra})
        status = "ok" if rc == 0 else f"exit {rc}"
        print(f"[demo] {name}: {status} ({seconds:.0f} s)", flush=True)

    def write(self) -> Path:
        p = self.out / "demo.json"
        p.write_text(json.dumps({"steps": self.steps, "notes": self.notes}, indent=2))
        return p


def _split_mode(source: Path) -> str:
    """'image' (hold out some photos of each person: the personal-album protocol) when some person folder has
    several photos, else 'identity' (with one photo per person an image split would leave no test images)."""
    from celebref.ingest.config import IMAGE_EXTENSIONS

    if source.is_dir():
        for d in [p for p in source.rglob("*") if p.is_dir()]:
            if sum(f.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS for f in d.iterdir() if f.is_file()) >= 2:
                return "image"
    return "identity"


def _needs_references(model: str) -> bool:
    from baselines.registry import get_model_info

    return bool(getattr(get_model_info(model).model_cls, "needs_references", False))


def _splits_with_reference_pairs(dataset: Path) -> set[str]:
    """The splits in which some image has another image of the same person (what reference-based models need)."""
    from bfrcore.dataset import FaceDataset

    ds = FaceDataset.load(dataset)
    return {split for split in ("train", "test") if any(ds.same_identity(i) for i in ds.image_ids(split))}


def _run(report: DemoReport, name: str, argv: list[str], tool: str = "bench") -> int:
    from bfrcli.bench import main as bench_main
    from bfrcli.celebref import main as celebref_main

    print(f"[demo] $ {tool} {' '.join(argv)}", flush=True)
    t0 = time.time()
    rc = (bench_main if tool == "bench" else celebref_main)(argv)
    report.step(name, rc, time.time() - t0)
    return rc


def run_demo(out: Path, source: Path | None = None, *, steps: int = 60, device: str = "auto", seed: int = 0,
             workers: int = 2, quiet: bool = True) -> DemoReport:
    """Run the chain into ``out``; returns the report (also written to ``out/demo.json``)."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    report = DemoReport(out)
    q = ["-q"] if quiet else []
    if source is None:
        source, notes = prepare_embedded_source(out / "source")
        report.notes += notes
    dataset = out / "dataset"
    split_mode = _split_mode(source)
    if split_mode == "identity":
        report.notes.append("no person has several photos: identity-disjoint split (test = other people)")
    rc = _run(report, "build", ["build", *q, "--source", str(source), "--out", str(dataset),
                                "--config", str(Path(__file__).with_name("demo_build.yaml")),
                                "--set", f"splits.mode={split_mode}",
                                "--workers", str(workers), "--seed", str(seed)], tool="celebref")
    if rc != 0:
        report.notes.append("the build failed; nothing to degrade")
        return report
    testsets = []
    for preset in PRESETS:
        t = out / "testsets" / preset
        if _run(report, f"degrade {preset}", ["degrade", *q, "--dataset", str(dataset), "--preset", preset,
                                              "--seed", str(seed), "--out", str(t), "--workers", str(workers)]) == 0:
            testsets.append(t)
    results = out / "results"
    checkpoints: dict[str, Path] = {}
    with_refs = _splits_with_reference_pairs(dataset)
    for model in TRAINED_MODELS:
        if "train" not in with_refs and _needs_references(model):
            report.notes.append(f"{model}: needs references, but no person has two training photos here; skipped")
            continue
        run_dir = out / "train" / model
        rc = _run(report, f"train {model}", [
            "train", *q, "--config", str(REPO_ROOT / "configs" / "train" / f"{model}_tiny.yaml"),
            "--dataset", str(dataset), "--out", str(run_dir), "--steps", str(steps), "--device", device,
            "--seed", str(seed), "--set", "val_every=0", "--set", "ckpt_every=0",
            "--set", "data.val_max_images=4",
            # a handful of photos: fewer faces than dictionary atoms, so the model's own initialisation
            "--set", "init.generic_dictionary_images=0",
            # faces of people photographed once train the generic path (DMDNet); the others also the specific one
            *(["--set", "data.references=optional"] if not _needs_references(model) else []),
        ])
        ckpt = run_dir / "checkpoints" / "last.pt"
        if rc == 0 and ckpt.is_file():
            checkpoints[model] = ckpt
        else:
            report.notes.append(f"{model}: training did not produce a checkpoint (exit {rc}); not scored")
    for t in testsets:
        for model, ckpt in checkpoints.items():
            _run(report, f"evaluate {model} on {t.name}", [
                "evaluate", *q, "--model", model, "--weights", str(ckpt), "--testset", str(t), "--out", str(results),
                "--device", device, "--mode", "auto", "--eval-size", "testset"])
        for model in TRIVIAL_MODELS:
            if _needs_references(model) and "test" not in with_refs:
                report.notes.append(f"{model} on {t.name}: needs references, but no test person has another photo; "
                                    "skipped")
                continue
            _run(report, f"evaluate {model} on {t.name}", [
                "evaluate", *q, "--model", model, "--testset", str(t), "--out", str(results), "--device", device,
                "--mode", "auto"])
    board = out / "leaderboard"
    _run(report, "leaderboard", ["leaderboard", *q, "--results", str(results), "--out", str(board),
                                 "--testsets", str(out / "testsets"), "--title", "CelebRef-HQ suite demo"])
    publish_and_verify(report, dataset, testsets, out / "publish", quiet=quiet)
    report.write()
    return report


def publish_and_verify(report: DemoReport, dataset: Path, testsets: list[Path], folder: Path, *,
                       quiet: bool = True, repo_id: str = "demo/celebref-demo") -> bool:
    """The last two steps: ``celebref publish --dry-run --include-pixels`` (nothing is uploaded), then the folder
    loaded back with ``datasets.load_dataset`` and compared with the dataset and test sets
    (:func:`celebref.publish.verify.verify_published_folder`). A difference fails the step, with every difference
    printed. Returns True when both steps pass."""
    from celebref.publish.verify import PublishedFolderMismatch, verify_published_folder

    argv = ["publish", *(["-q"] if quiet else []), "--dataset", str(dataset), "--repo-id", repo_id,
            *[a for t in testsets for a in ("--testset", str(t))], "--dry-run", "--include-pixels",
            "--license", "cc-by-nc-4.0", "--out", str(folder)]
    if _run(report, "publish (dry run)", argv, tool="celebref") != 0:
        report.notes.append("publish dry run failed; the load-back check was not run")
        return False
    print(f"[demo] $ python -c 'verify_published_folder({str(folder)!r}, ...)'", flush=True)
    t0 = time.time()
    try:
        rep = verify_published_folder(folder, dataset, testsets)
    except PublishedFolderMismatch as e:
        print(f"error: the published folder differs from the dataset: {e}", file=sys.stderr, flush=True)
        report.step("load-back check", 1, time.time() - t0, error=str(e))
        return False
    report.step("load-back check", 0, time.time() - t0, checked=rep.summary())
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bfrcli.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    p.add_argument("--source", type=Path, default=None, help="your photos (folder tree <person>/<photos>)")
    p.add_argument("--steps", type=int, default=60, help="training steps per model (default 60)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--fetch-only", action="store_true", help="only download the embedded sample photos")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.fetch_only:
        try:
            print(f"sample photos: {fetch_sample_photos()}")
            return 0
        except Exception as e:  # noqa: BLE001
            print(f"note: sample photos not fetched ({e}); the demo will use the package photos only")
            return 0
    if args.source is not None and not args.source.exists():
        print(f"error: --source {args.source} does not exist", file=sys.stderr)
        return 2
    t0 = time.time()
    report = run_demo(args.out, args.source, steps=args.steps, device=args.device, seed=args.seed,
                      workers=args.workers, quiet=not args.verbose)
    failed = [s for s in report.steps if s["rc"] != 0]
    print(f"\n== demo finished in {(time.time() - t0) / 60:.1f} min: {len(report.steps) - len(failed)} steps ok, "
          f"{len(failed)} failed")
    for n in report.notes:
        print(f"   note: {n}")
    html = report.out / "leaderboard" / "index.html"
    print(f"   dataset report: {report.out / 'dataset' / 'report.html'}")
    print(f"   leaderboard:    {html if html.is_file() else '(not written)'}")
    pub = report.out / "publish" / "README.md"
    print(f"   publish folder: {pub.parent if pub.is_file() else '(not written)'} (dry run: not uploaded)")
    print(f"   log of steps:   {report.out / 'demo.json'}")
    return 0 if html.is_file() and not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
