"""Identity purity of `celebref build`'s clustering, measured on people the thresholds were never tuned on.

    .venv/bin/python benchmarks/bench_cluster_purity.py [--faces ../shared/data/faces] [--work /tmp/celebref_purity]
                                                        [--folds 3] [--seeds 0,1] [--json out.json]

1. Faces: the main face of every labelled photo of the shared faces that shows one known person
   (celeba_in_the_wild 10x12 unaligned in-the-wild photos, LFW 5x10, five_celebrity 3x~16, dlib's johns 3x11,
   CelebRef-HQ 5 aligned folders, ASFFNet's Obama, StarGAN CelebA-HQ 14 singletons), through `celebref build` as one
   flat folder without names (faces + dlib embeddings, cached under --work; quality and dedup filters off). Truth:
   manifest identity, merged across sources by faces/identities.csv ``cross_source_key``. The 500 UTKFace
   aligned_200 crops are embedded too but left out unless --utk-min-age is given: they are not one person per photo
   (repeated celebrities, duplicates) and dlib does not separate infants, so treating each as a distinct person
   would score true merges as errors.
2. Feature variants (cached under --work): ``base`` (the build's descriptor), ``flip`` (mean of the descriptor of
   the crop and of its mirror image), ``jitter`` (dlib ``num_jitters``), ``flip+jitter``.
3. Protocol: the multi-photo people are dealt into --folds seeded folds by identity (the closest look-alike pairs,
   by inter-centroid distance, are kept in one fold so every test fold faces look-alikes), singletons too. For each
   fold, every threshold is chosen on the other folds' people only (over cut x lever parameter, the best tuning
   BCubed F1 among the points with tuning P >= --target-p and purity >= --target-purity), and the test fold is scored: BCubed P/R/F1,
   kept identities (clusters with >= --min-images faces, as the build's min_images), their purity (share of the
   cluster's majority person; mean and minimum) and how many mix people. The product default cut is the median
   of the per-fold cuts chosen with the purity-first targets (tuning P >= --strict-p, purity 1.0), reported at
   that fixed cut on every test fold (the 'strict' row); docs/build.md takes the median over two runs
   (--folds 3 --seeds 0,1 and --folds 2 --seeds 0,1,2). Faces a lever sets aside
   (``identity_uncertain``) count as singletons in BCubed (their recall is lost) and as removed from the
   identities they left.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KINDS = ("celeba_in_the_wild", "lfw_250", "face_crop_150", "small_crop", "hq_aligned_512", "hq_aligned_1024",
         "aligned_200_age_gender_race_in_name")
SOURCES = ("celeba_wild_matush97", "lfw_krasserm", "five_celebrity", "dlib", "dmdnet_celebrefhq",
           "asffnet512_obama", "stargan_v2_celebahq", "utkface_crop_part1")


def truth_of(faces: Path) -> dict[str, str]:
    """sha256 -> person key for the selected rows."""
    xkey = {}
    for r in csv.DictReader(open(faces / "identities.csv", newline="")):
        if r["cross_source_key"]:
            xkey[(r["source"], r["identity"])] = r["cross_source_key"].rstrip("*")
    out = {}
    for r in csv.DictReader(open(faces / "manifest.csv", newline="")):
        if r["kind"] not in KINDS or r["source"] not in SOURCES:
            continue
        if r["source"] == "utkface_crop_part1":
            out[r["sha256"]] = "utk:" + r["sha256"][:12]
        elif r["identity"]:
            out[r["sha256"]] = xkey.get((r["source"], r["identity"]), f"{r['source']}:{r['identity']}")
    return out


def build_faces(faces: Path, work: Path) -> list[dict]:
    """[{face_id, crop, truth, source}] of the main face of every selected photo (cached build under work)."""
    from celebref.pipeline import build_dataset, parse_config

    cache = work / "faces.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    truth = truth_of(faces)
    tree = work / "photos"
    tree.mkdir(parents=True, exist_ok=True)
    src_of = {}
    for r in csv.DictReader(open(faces / "manifest.csv", newline="")):
        if r["sha256"] in truth:
            link = tree / f"{r['source']}__{r['path'].replace('/', '__')}"
            if not link.exists():
                link.symlink_to(faces / r["source"] / r["path"])
            src_of[r["sha256"]] = r["source"]
    cfg = parse_config({"ingest": {"name_from": "none"}, "identity": {"min_images": 1, "embedder": "dlib"},
                        "quality": {"niqe": False, **{k: None for k in (
                            "min_eye_distance", "min_sharpness", "max_noise_ratio", "max_tone_r2", "min_chroma",
                            "max_blockiness", "min_brightness", "max_brightness", "max_clipped")}},
                        "dedup": {"enabled": False}, "output": {"report": False}})
    res = build_dataset([f"folder:{tree}"], work / "ds", cfg, workers=2)
    fcache = res.stage_runs["faces"].cache
    crops = {}
    for rec in res.stage_runs["faces"].records.values():
        for f in ((rec.get("result") or {}).get("faces") or []):
            if not f.get("skipped"):
                crops[f["face_id"]] = str(fcache.file_path(f["crop_file"]))
    emb = {}
    for rec in res.stage_runs["embed"].records.values():
        emb.update((rec.get("result") or {}).get("embeddings") or {})
    m = res.manifest
    main = m[(m["face_index"] == 0) & m["source_sha256"].isin(list(truth))].sort_values("face_id")
    out = [{"face_id": r.face_id, "crop": crops[r.face_id], "truth": truth[r.source_sha256],
            "source": src_of[r.source_sha256], "base": emb[r.face_id]}
           for r in main.itertuples() if r.face_id in emb and r.face_id in crops]
    cache.write_text(json.dumps(out))
    return out


_AGES: dict[str, int] = {}


def utk_age(faces: Path, key: str) -> int:
    """Age of a UTKFace person key ('utk:<sha256[:12]>') from its file name (age_gender_race_date)."""
    if not _AGES:
        for r in csv.DictReader(open(faces / "manifest.csv", newline="")):
            if r["source"] == "utkface_crop_part1":
                _AGES["utk:" + r["sha256"][:12]] = int(Path(r["path"]).name.split("_")[0])
    return _AGES[key]


VARIANTS = {"base": (0, False), "flip": (0, True), "jitter": (4, False), "flip+jitter": (4, True)}


def _embed_chunk(args):
    crops, jit, flip = args
    from bfrcore.faces.embed import DlibEmbedder
    from bfrcore.imageio import read_image

    emb = DlibEmbedder(num_jitters=jit, flip=flip)
    return emb.embed([read_image(c) for c in crops])


def variant_embeddings(faces_list: list[dict], work: Path, name: str, workers: int = 2) -> np.ndarray:
    """(N, 128) descriptors of the crops for one feature variant (cached as work/emb_<name>.npy)."""
    if name == "base":
        return np.asarray([f["base"] for f in faces_list], np.float64)
    path = work / f"emb_{name.replace('+', '_')}.npy"
    if path.is_file():
        return np.load(path)
    from concurrent.futures import ProcessPoolExecutor

    jit, flip = VARIANTS[name]
    crops = [f["crop"] for f in faces_list]
    chunks = [crops[i:i + 50] for i in range(0, len(crops), 50)]
    with ProcessPoolExecutor(workers) as ex:
        x = np.concatenate(list(ex.map(_embed_chunk, [(c, jit, flip) for c in chunks]))).astype(np.float64)
    np.save(path, x)
    return x


# ------------------------------------------------------------------------------------------ protocol
def look_alikes(x: np.ndarray, truth: list[str], k: int = 4) -> list[tuple[str, str, float]]:
    """The k closest disjoint pairs of different multi-photo people by inter-centroid distance."""
    cnt = Counter(truth)
    people = sorted(p for p, n in cnt.items() if n >= 2)
    t = np.asarray(truth)
    cen = np.stack([x[t == p].mean(0) for p in people])
    d = np.sqrt(((cen[:, None] - cen[None]) ** 2).sum(-1))
    pairs = sorted((d[i, j], people[i], people[j]) for i in range(len(people)) for j in range(i + 1, len(people)))
    out, used = [], set()
    for dist, a, b in pairs:
        if a in used or b in used:
            continue
        out.append((a, b, float(dist)))
        used |= {a, b}
        if len(out) == k:
            break
    return out


def make_folds(truth: list[str], pairs, n_folds: int, seed: int) -> list[set[str]]:
    """Identity-disjoint folds: look-alike pairs travel together; multi-photo people and singletons are dealt
    separately (seeded), so every fold has both."""
    rng = np.random.default_rng(seed)
    cnt = Counter(truth)
    paired = {p for a, b, _ in pairs for p in (a, b)}
    units = [[a, b] for a, b, _ in pairs] + [[p] for p in sorted(cnt) if cnt[p] >= 2 and p not in paired]
    singles = sorted(p for p in cnt if cnt[p] == 1)
    folds: list[set[str]] = [set() for _ in range(n_folds)]
    pair_units = [u for u in units if len(u) == 2]
    rest = [u for u in units if len(u) == 1]
    for i, u in enumerate(pair_units):  # one look-alike pair per fold first
        folds[i % n_folds].update(u)
    order = rng.permutation(len(rest))
    for i, j in enumerate(order):
        folds[(i + len(pair_units)) % n_folds].update(rest[j])
    order = rng.permutation(len(singles))
    for i, j in enumerate(order):
        folds[i % n_folds].add(singles[j])
    return folds


def score(labels: np.ndarray, truth: list[str], uncertain: set[int], min_images: int) -> dict:
    """BCubed on every face (uncertain faces as singletons) + purity of the kept identities."""
    from celebref.pipeline.cluster_metrics import cluster_scores

    pred = [f"u{i}" if i in uncertain else f"c{c}" for i, c in enumerate(labels)]
    s = cluster_scores(pred, truth)
    members: dict[str, list[str]] = defaultdict(list)
    for p, t in zip(pred, truth):
        if not p.startswith("u"):
            members[p].append(t)
    kept = [m for m in members.values() if len(m) >= min_images]
    pur = [Counter(m).most_common(1)[0][1] / len(m) for m in kept]
    return {"P": s["bcubed_precision"], "R": s["bcubed_recall"], "F1": s["bcubed_f1"],
            "kept": len(kept), "purity": float(np.mean(pur)) if pur else 1.0,
            "min_purity": float(min(pur)) if pur else 1.0, "mixed": int(sum(p < 1 for p in pur)),
            "uncertain": len(uncertain), "n": len(truth)}


class Clusterer:
    """Average-linkage tree of one face subset, cut at any threshold, with the purity levers applied."""

    def __init__(self, x: np.ndarray, truth: list[str]):
        from scipy.cluster.hierarchy import linkage
        from scipy.spatial.distance import pdist

        self.x, self.truth = x, truth
        self.z = linkage(pdist(x), "average")

    def run(self, t: float, lever: dict, min_images: int) -> dict:
        from scipy.cluster.hierarchy import fcluster

        from celebref.pipeline.clustering import canonical
        from celebref.pipeline.identity import core_outliers, split_bimodal

        labels = canonical(fcluster(self.z, t, "distance"))
        if lever.get("split_margin") is not None:
            labels, _ = split_bimodal(self.x, labels, "euclidean", margin=lever["split_margin"])
        unc: set[int] = set()
        if lever.get("core_margin") is not None:
            unc = set(core_outliers(self.x, labels, "euclidean", margin=lever["core_margin"]))
        return score(labels, self.truth, unc, min_images)


THRESHOLDS = [round(v, 3) for v in np.arange(0.35, 0.701, 0.01)]
LEVERS = {
    "cut only": [{}],
    "bimodal split": [{"split_margin": m} for m in (0.04, 0.06, 0.08, 0.10, 0.12)],
    "core margin": [{"core_margin": m} for m in (0.0, 0.02, 0.04, 0.06, 0.08)],
    "split + core": [{"split_margin": s, "core_margin": c} for s in (0.06, 0.08, 0.10) for c in (0.0, 0.04)],
}


def choose(results: list[tuple[float, dict, dict]], target_p: float, target_purity: float):
    """The tuning grid point with the best F1 among those meeting the purity targets (else the most precise)."""
    ok = [r for r in results if r[2]["P"] >= target_p and r[2]["purity"] >= target_purity]
    if ok:
        return max(ok, key=lambda r: (r[2]["F1"], r[0]))
    return max(results, key=lambda r: (r[2]["P"], r[2]["F1"]))


def protocol(x: np.ndarray, truth: list[str], folds: list[set[str]], *, target_p: float, target_purity: float,
             min_images: int, levers=None, fixed: float | None = None) -> list[dict]:
    """Per fold: tune (threshold, lever parameter) on the other folds' people, score the test fold."""
    levers = levers or LEVERS
    t = np.asarray(truth)
    out = []
    for k, test_people in enumerate(folds):
        te = np.flatnonzero(np.isin(t, sorted(test_people)))
        tu = np.flatnonzero(~np.isin(t, sorted(test_people)))
        ctu, cte = Clusterer(x[tu], [truth[i] for i in tu]), Clusterer(x[te], [truth[i] for i in te])
        row = {"fold": k, "test_people": len(test_people), "test_faces": len(te)}
        for name, grid in levers.items():
            ths = [fixed] if fixed is not None else THRESHOLDS
            res = [(th, lev, ctu.run(th, lev, min_images)) for th in ths for lev in grid]
            th, lev, tun = choose(res, target_p, target_purity)
            row[name] = {"threshold": th, "lever": lev, "tune": tun, "test": cte.run(th, lev, min_images)}
        out.append(row)
    return out


def summarize(rows: list[dict], name: str) -> dict:
    keys = ("P", "R", "F1", "purity", "min_purity", "mixed", "kept", "uncertain")
    vals = {k: np.array([r[name]["test"][k] for r in rows], float) for k in keys}
    return {k: (float(v.mean()), float(v.min()), float(v.max())) for k, v in vals.items()} | {
        "thresholds": [r[name]["threshold"] for r in rows], "levers": [r[name]["lever"] for r in rows]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "data" / "faces")
    ap.add_argument("--work", type=Path, default=Path("/tmp/celebref_purity"))
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seeds", default="0,1", help="one fold assignment per seed (repeated k-fold)")
    ap.add_argument("--target-p", type=float, default=0.98)
    ap.add_argument("--target-purity", type=float, default=0.99)
    ap.add_argument("--strict-p", type=float, default=0.995,
                    help="tuning BCubed precision of the purity-first rule that picks the product default")
    ap.add_argument("--min-images", type=int, default=3)
    ap.add_argument("--variants", default="base,flip,jitter,flip+jitter")
    ap.add_argument("--utk-min-age", type=int, default=None,
                    help="add UTKFace photos of people this old as unverified 'singletons' (default: none)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    fl_all = build_faces(a.faces, a.work)
    keep = [i for i, f in enumerate(fl_all) if f["source"] != "utkface_crop_part1"
            or (a.utk_min_age is not None and utk_age(a.faces, f["truth"]) >= a.utk_min_age)]
    print(f"UTKFace photos left out: {len(fl_all) - len(keep)} (not one person per photo: repeated celebrities "
          f"and duplicates; infants collapse in dlib; see docs/build.md)")
    fl = [fl_all[i] for i in keep]
    truth = [f["truth"] for f in fl]
    cnt = Counter(truth)
    print(f"{len(fl)} faces, {len(cnt)} people ({sum(n >= 2 for n in cnt.values())} with 2+ photos, "
          f"{sum(n == 1 for n in cnt.values())} singletons); sources {dict(Counter(f['source'] for f in fl))}")
    xb = variant_embeddings(fl_all, a.work, "base")[keep]
    pairs = look_alikes(xb, truth)
    print("look-alike pairs (base centroid distance): " + ", ".join(f"{p} / {q} {d:.3f}" for p, q, d in pairs))
    folds = [f for sd in a.seeds.split(",") for f in make_folds(truth, pairs, a.folds, int(sd))]
    report = {"faces": len(fl), "people": len(cnt), "look_alikes": pairs,
              "folds": [sorted(f) for f in folds], "variants": {}}
    for var in a.variants.split(","):
        x = variant_embeddings(fl_all, a.work, var)[keep]
        rows = protocol(x, truth, folds, target_p=a.target_p, target_purity=a.target_purity,
                        min_images=a.min_images)
        fixed = protocol(x, truth, folds, target_p=a.target_p, target_purity=a.target_purity,
                         min_images=a.min_images, levers={"cut only": [{}]}, fixed=0.65)
        # the product default: the median of the per-fold cuts chosen with the purity-first targets (tuning
        # BCubed P >= --strict-p and purity 1.0), then scored at that fixed cut on every test fold
        strict = protocol(x, truth, folds, target_p=a.strict_p, target_purity=1.0, min_images=a.min_images,
                          levers={"cut only": [{}]})
        strict_cuts = [float(r["cut only"]["threshold"]) for r in strict]
        median_cut = float(np.median(strict_cuts))
        at_default = protocol(x, truth, folds, target_p=a.target_p, target_purity=a.target_purity,
                              min_images=a.min_images, levers={"cut only": [{}]}, fixed=round(median_cut, 2))
        call = Clusterer(x, truth)
        th_all, _, sc_all = choose([(th, {}, call.run(th, {}, a.min_images)) for th in THRESHOLDS],
                                   a.target_p, a.target_purity)
        report["variants"][var] = {"rows": rows, "old_default_0.65": summarize(fixed, "cut only"),
                                   "summary": {n: summarize(rows, n) for n in LEVERS},
                                   "cut_on_all_people": th_all, "strict_cuts": strict_cuts,
                                   "median_strict_cut": median_cut,
                                   "at_median_strict_cut": summarize(at_default, "cut only")}
        print(f"\n== features: {var}  (test folds: mean [min..max]; thresholds chosen on tuning people)")
        print(f"{'lever':<16} {'cuts':<28} {'P':>18} {'R':>18} {'F1':>18} {'purity':>18} {'mixed':>6} "
              f"{'kept':>5} {'uncert':>6}")
        items = [("0.65 untuned", report["variants"][var]["old_default_0.65"]),
                 (f"{median_cut:.2f} strict", report["variants"][var]["at_median_strict_cut"])] + list(
            report["variants"][var]["summary"].items())
        for n, sm in items:
            cuts = ",".join(f"{t:.2f}" for t in sm["thresholds"])

            def f(k):
                m, lo, hi = sm[k]
                return f"{m:.3f} [{lo:.3f}..{hi:.3f}]"

            print(f"{n:<16} {cuts:<28} {f('P'):>18} {f('R'):>18} {f('F1'):>18} {f('purity'):>18} "
                  f"{sm['mixed'][0]:>6.1f} {sm['kept'][0]:>5.1f} {sm['uncertain'][0]:>6.1f}")
            if "untuned" not in n and "strict" not in n and sm["levers"][0]:
                print(f"{'':<16} params {sm['levers']}")
        print(f"purity-first cuts per fold (tuning P >= {a.strict_p}, purity 1.0): {strict_cuts}, median "
              f"{median_cut:.3f} (the '{median_cut:.2f} strict' row: that cut fixed on every test fold)")
        print(f"cut chosen on all {len(cnt)} people (the rule, no test set): {th_all:.2f} "
              f"(P {sc_all['P']:.3f} R {sc_all['R']:.3f}); per-fold cuts above")
    if a.json:
        a.json.write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--gather-only"]:
        fl = build_faces(Path(sys.argv[2]), Path(sys.argv[3]))
        print(len(fl), Counter(f["source"] for f in fl))
    else:
        sys.exit(main())
