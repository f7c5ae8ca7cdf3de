"""Load a published folder back with ``datasets.load_dataset`` (local path, offline) and compare it with the
DATASET and TESTSETs it was made from: every config, split, row, identity label and image hash.

Used by the chain test (tests/test_chain.py) and by ``make demo``'s last step. Every difference is collected and
reported at once; any difference raises :class:`PublishedFolderMismatch`.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bfrcore.dataset import FaceDataset

_MAX_LISTED = 20  # differences named in the error message (the count is always given)


class PublishedFolderMismatch(AssertionError):
    """The published folder does not hold what the dataset and test sets hold."""


@dataclass
class VerifyReport:
    """What was compared: rows per config and split, hashes compared, identities."""

    folder: Path
    rows: dict[str, dict[str, int]] = field(default_factory=dict)  # config -> split -> rows loaded
    identities: list[str] = field(default_factory=list)
    hq_hashes: int = 0  # embedded HQ images whose sha256 was compared with the dataset file
    lq_hashes: int = 0  # embedded LQ images whose sha256 was compared with the test set file
    references: int = 0  # (image, reference, rank) rows compared
    pixels: bool = False

    def summary(self) -> str:
        parts = [f"{c}: " + ", ".join(f"{s} {n}" for s, n in sp.items()) for c, sp in self.rows.items()]
        return (f"{len(self.rows)} configs ({'; '.join(parts)}), {len(self.identities)} identities, "
                f"{self.references} reference rows, {self.hq_hashes} HQ and {self.lq_hashes} LQ image hashes "
                "equal to the source files")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _configs_of(folder: Path) -> tuple[list[dict], list[dict]]:
    from huggingface_hub import DatasetCard

    card = DatasetCard((folder / "README.md").read_text(encoding="utf-8"))
    return list(card.data.to_dict().get("configs") or []), list(card.data.to_dict().get("dataset_info") or [])


def verify_published_folder(folder: str | Path, dataset: str | Path, testsets: Iterable[str | Path] = (), *,
                            cache_dir: str | Path | None = None) -> VerifyReport:
    """Compare the folder written by ``celebref publish --dry-run`` with ``dataset`` and ``testsets``.

    Checks: the set of configs (hq, train, test, references, one per test set) and their splits; row counts (also
    against the card's ``dataset_info``); per row the image id, split, identity label (ClassLabel names = the
    dataset's sorted identities, in every config), sha256, path and references; the ``train``/``test`` configs
    equal ``hq``'s splits; the ``references`` rows; per test set the image ids, ground-truth hashes and identity;
    with pixels the sha256 of every embedded HQ and LQ image equals that of the source file; build.json's dataset
    hash and each testsets/<config>.json's hash. Raises :class:`PublishedFolderMismatch` listing the differences.
    """
    import datasets
    from datasets import Image

    from bfrcore.testset import TestSet
    from celebref.publish.builder import config_name_for

    folder, dataset = Path(folder), Path(dataset)
    ds = FaceDataset.load(dataset)
    tsets = [TestSet.load(t, dataset_root=dataset) for t in testsets]
    errors: list[str] = []
    report = VerifyReport(folder)

    def check(ok: bool, msg: str) -> bool:
        if not ok:
            errors.append(msg)
        return ok

    if not check((folder / "README.md").is_file(), f"{folder}: no README.md"):
        raise PublishedFolderMismatch("; ".join(errors))
    configs, infos = _configs_of(folder)
    splits_of = {c["config_name"]: [d["split"] for d in c.get("data_files") or []] for c in configs}
    idents = sorted(str(i) for i in ds.images["identity"].unique())
    report.identities = idents
    test_ids, train_ids = ds.image_ids("test"), ds.image_ids("train")
    refs = {i: ds.references_of(i) for i in test_ids}
    expected = {"hq": [s for s, ids in (("train", train_ids), ("test", test_ids)) if ids]}
    expected.update({s: [s] for s in expected["hq"]})
    if any(refs.values()):
        expected["references"] = ["test"]
    ts_of = {config_name_for(t.name): t for t in tsets}
    expected.update({c: ["test"] for c in ts_of})
    check(splits_of == expected, f"configs/splits {splits_of} != expected {expected}")

    # ---- build.json and test-set descriptions
    bj = folder / "build.json"
    if check(bj.is_file(), "build.json missing"):
        check(json.loads(bj.read_text()).get("dataset_hash") == ds.hash,
              f"build.json dataset_hash != the dataset's {ds.hash[:12]}…")
    for c, t in ts_of.items():
        p = folder / "testsets" / f"{c}.json"
        if check(p.is_file(), f"testsets/{c}.json missing"):
            check(json.loads(p.read_text()).get("testset_hash") == t.hash, f"testsets/{c}.json hash != {t.name}'s")

    # ---- load every config
    tmp = None
    if cache_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="celebref-verify-")
        cache_dir = tmp.name
    progress_was_enabled = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        loaded = {}
        for c in splits_of:
            try:
                loaded[c] = datasets.load_dataset(str(folder), c, cache_dir=str(cache_dir))
            except Exception as e:  # noqa: BLE001 - reported as a mismatch
                errors.append(f"load_dataset({folder}, {c!r}) failed: {type(e).__name__}: {e}")
        report.rows = {c: {s: d.num_rows for s, d in dd.items()} for c, dd in loaded.items()}
        card_rows = {i["config_name"]: {s["name"]: s["num_examples"] for s in i.get("splits") or []} for i in infos}
        check(card_rows == report.rows, f"the card's dataset_info rows {card_rows} != loaded {report.rows}")

        for c, dd in loaded.items():
            for s, d in dd.items():
                f = d.features.get("identity")
                check(getattr(f, "names", None) == idents,
                      f"{c}/{s}: identity labels {getattr(f, 'names', None)} != the dataset's {idents}")

        m = ds.images
        # ---- hq and its train/test views
        hq_rows: dict[str, dict[str, dict]] = {}
        for s, ids in (("train", train_ids), ("test", test_ids)):
            if "hq" not in loaded or s not in loaded["hq"]:
                continue
            d = loaded["hq"][s]
            pixels = "image" in d.features
            report.pixels = report.pixels or pixels
            if pixels:
                d = d.cast_column("image", Image(decode=False))
            names = d.features["identity"].names
            rows = {}
            for r in d:
                iid = r["image_id"]
                rows[iid] = r
                if not check(iid in m.index, f"hq/{s}: unknown image {iid}"):
                    continue
                check(r["split"] == s, f"hq/{s}/{iid}: split {r['split']!r}")
                check(names[r["identity"]] == ds.identity_of(iid),
                      f"hq/{s}/{iid}: identity {names[r['identity']]!r} != {ds.identity_of(iid)!r}")
                check(r["sha256"] == m.at[iid, "sha256"], f"hq/{s}/{iid}: sha256 differs from the manifest")
                check(r["path"] == m.at[iid, "path"], f"hq/{s}/{iid}: path {r['path']!r}")
                check(list(r["references"]) == (refs.get(iid, []) if s == "test" else []),
                      f"hq/{s}/{iid}: references {r['references']} != {refs.get(iid, [])}")
                if pixels:
                    got = _sha256(r["image"]["bytes"])
                    if check(got == m.at[iid, "sha256"] == _sha256(ds.image_path(iid).read_bytes()),
                             f"hq/{s}/{iid}: embedded image sha256 {got[:12]}… != the dataset file's"):
                        report.hq_hashes += 1
            check(sorted(rows) == sorted(ids), f"hq/{s}: image ids differ from the dataset's {s} split "
                                               f"({len(rows)} rows, {len(ids)} images)")
            hq_rows[s] = rows
            if s in loaded:  # the train / test config: the same rows
                other = loaded[s][s]
                check(sorted(other["image_id"]) == sorted(rows) and
                      sorted(other["sha256"]) == sorted(r["sha256"] for r in rows.values()),
                      f"config {s} differs from hq/{s}")

        # ---- references
        if "references" in loaded:
            d = loaded["references"]["test"]
            got = sorted((r["image_id"], r["ref_image_id"], r["rank"]) for r in d)
            want = sorted((i, rid, k) for i, rl in refs.items() for k, rid in enumerate(rl))
            check(got == want, f"references: {len(got)} rows differ from the dataset's {len(want)}")
            for r in d:
                check(d.features["identity"].names[r["identity"]] == ds.identity_of(r["image_id"]),
                      f"references/{r['image_id']}: identity label")
            report.references = len(got)

        # ---- test sets
        for c, t in ts_of.items():
            if c not in loaded:
                continue
            d = loaded[c]["test"]
            pixels = "lq" in d.features
            if pixels:
                d = d.cast_column("lq", Image(decode=False))
            names = d.features["identity"].names
            ids = []
            for r in d:
                iid = r["image_id"]
                ids.append(iid)
                if not check(iid in m.index, f"{c}: unknown image {iid}"):
                    continue
                check(names[r["identity"]] == ds.identity_of(iid), f"{c}/{iid}: identity label")
                check(r["gt_sha256"] == m.at[iid, "sha256"], f"{c}/{iid}: gt_sha256 != the dataset's sha256")
                if pixels and iid in t.image_ids:
                    got = _sha256(r["lq"]["bytes"])
                    want = _sha256(t.lq_path(iid).read_bytes())
                    if check(got == want, f"{c}/{iid}: embedded LQ sha256 {got[:12]}… != {t.name}'s file"):
                        report.lq_hashes += 1
            check(sorted(ids) == sorted(t.image_ids), f"{c}: image ids differ from test set {t.name!r}")
    finally:
        if progress_was_enabled:
            datasets.enable_progress_bars()
        if tmp is not None:
            tmp.cleanup()
    if errors:
        listed = "\n  ".join(errors[:_MAX_LISTED])
        more = f"\n  ... and {len(errors) - _MAX_LISTED} more" if len(errors) > _MAX_LISTED else ""
        raise PublishedFolderMismatch(f"{folder}: {len(errors)} difference(s) from {dataset}:\n  {listed}{more}")
    return report
