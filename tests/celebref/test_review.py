"""Human review and curation: `celebref review DATASET` (review.html), curation files, `celebref build --curation`.

Unit tests of apply_curation on synthetic identity groups (split / merge / reject face / reject identity, order
independence, unknown ids), load_curation's errors, the review CLI on the small real build, and the page in headless
Chromium: reject a face, merge two identities, save, rebuild with --curation, check the manifest.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from bfrcli.celebref import main as celebref_main
from bfrcore.formats import FormatError
from celebref.pipeline.identity import IdentityGroups
from celebref.review.curation import Curation, apply_curation, load_curation

HASH = "a" * 64


def _groups() -> IdentityGroups:
    """Three identities (c0: a1..a4 'Ann', c1: b1..b3 'Bob', c2: c1..c2 unnamed), one identity-stage reject x1."""
    groups = {"c0": {"name": "Ann", "aliases": [], "cluster": 0, "faces": ["a1", "a2", "a3", "a4"]},
              "c1": {"name": "Bob", "aliases": [], "cluster": 1, "faces": ["b1", "b2", "b3"]},
              "c2": {"name": None, "aliases": [], "cluster": 2, "faces": ["c1", "c2"]}}
    group_of = {f: k for k, g in groups.items() for f in g["faces"]}
    clusters = {f: g["cluster"] for g in groups.values() for f in g["faces"]} | {"x1": 0}
    return IdentityGroups(clusters, group_of, groups, {"x1": ("name_outlier", "labelled 'Ann' elsewhere")}, 0.6)


def _cur(actions: list[dict]) -> Curation:
    return Curation.model_validate({"format": "celebref.curation/1", "dataset_hash": HASH, "actions": actions})


def _partition(res) -> list[tuple[tuple[str, ...], str | None]]:
    return sorted((tuple(g["faces"]), g["name"]) for g in res.groups.groups.values())


def test_apply_curation_split_merge_reject():
    g0 = _groups()
    res = apply_curation(g0, _cur([
        {"seq": 1, "action": "split", "face_ids": ["a4", "a3"]},
        {"seq": 2, "action": "merge", "face_id": "c2", "into": "b1"},
        {"seq": 3, "action": "reject_face", "face_id": "a1"},
    ]))
    assert _partition(res) == [(("a2",), "Ann"), (("a3", "a4"), None), (("b1", "b2", "b3", "c1", "c2"), "Bob")]
    assert res.rejects == {"a1": ("curation_reject_face", "rejected by review (reject_face#3)")}
    assert res.curated == {"a3": "split#1", "a4": "split#1", "c1": "merge#2", "c2": "merge#2",
                           "a1": "reject_face#3"}
    assert res.groups.group_of["c1"] == "c1" and res.groups.group_of["a3"] == "curated:a3"
    assert "a1" not in res.groups.group_of and res.groups.rejects == g0.rejects  # identity rejects kept as they were
    assert res.warnings == [] and dict(res.applied) == {"split": 1, "merge": 1, "reject_face": 1}
    # the input is not modified
    assert g0.groups["c0"]["faces"] == ["a1", "a2", "a3", "a4"] and g0.group_of["c1"] == "c2"


def test_apply_curation_reject_identity_and_merge_names():
    res = apply_curation(_groups(), _cur([
        {"seq": 5, "action": "merge", "face_id": "b2", "into": "a1"},  # Bob's faces join Ann (Bob an alias)
        {"seq": 9, "action": "reject_identity", "face_id": "c2"},
    ]))
    assert _partition(res) == [(("a1", "a2", "a3", "a4", "b1", "b2", "b3"), "Ann")]
    assert res.groups.groups["c0"]["aliases"] == ["Bob"]
    assert res.rejects == {f: ("curation_reject_identity", "identity of c2 rejected by review (reject_identity#9)")
                           for f in ("c1", "c2")}
    assert res.curated["b1"] == "merge#5" and res.curated["c1"] == "reject_identity#9"


def test_apply_curation_order_is_seq_not_file_order():
    """Actions apply in ascending seq whatever their order in the file: split-then-merge differs from
    merge-then-split, and shuffling the list never changes the result."""
    split_then_merge = [{"seq": 1, "action": "split", "face_ids": ["a3", "a4"]},
                        {"seq": 2, "action": "merge", "face_id": "a1", "into": "b1"}]
    merge_then_split = [{"seq": 2, "action": "split", "face_ids": ["a3", "a4"]},
                        {"seq": 1, "action": "merge", "face_id": "a1", "into": "b1"}]
    r1 = apply_curation(_groups(), _cur(split_then_merge))
    r2 = apply_curation(_groups(), _cur(merge_then_split))
    assert _partition(r1) == [(("a1", "a2", "b1", "b2", "b3"), "Bob"), (("a3", "a4"), None), (("c1", "c2"), None)]
    assert _partition(r2) == [(("a1", "a2", "b1", "b2", "b3"), "Bob"), (("a3", "a4"), None), (("c1", "c2"), None)]
    assert r1.curated != r2.curated  # a3/a4 were merged, then split in r2
    assert r2.curated["a3"] == "merge#1;split#2" and r1.curated["a3"] == "split#1"
    actions = split_then_merge + [{"seq": 3, "action": "reject_face", "face_id": "b3"},
                                  {"seq": 4, "action": "reject_identity", "face_id": "c1"},
                                  {"seq": 7, "action": "merge", "face_id": "a3", "into": "b2"}]
    ref = apply_curation(_groups(), _cur(actions))
    rng = random.Random(0)
    for _ in range(5):
        shuffled = actions[:]
        rng.shuffle(shuffled)
        r = apply_curation(_groups(), _cur(shuffled))
        assert (_partition(r), r.curated, r.rejects, r.warnings) == \
            (_partition(ref), ref.curated, ref.rejects, ref.warnings)


def test_apply_curation_unknown_ids_are_warnings():
    res = apply_curation(_groups(), _cur([
        {"seq": 1, "action": "reject_face", "face_id": "nope"},
        {"seq": 2, "action": "merge", "face_id": "a1", "into": "x1"},  # x1: rejected at the identity stage
        {"seq": 3, "action": "split", "face_ids": ["a1", "ghost"]},
        {"seq": 4, "action": "reject_face", "face_id": "a1"},
        {"seq": 5, "action": "reject_face", "face_id": "a1"},  # already rejected by #4
        {"seq": 6, "action": "merge", "face_id": "b1", "into": "b2"},  # same identity
    ]))
    assert res.warnings == [
        "reject_face#1: unknown face id nope (not a clustered face of this build); skipped",
        "merge#2: target face x1 is not in an identity (rejected at the identity stage: name_outlier); skipped",
        "split#3: unknown face id ghost (not a clustered face of this build); left out of the split",
        "reject_face#5: face a1 was already rejected by this curation; skipped",
        "merge#6: b1 and b2 are already one identity; nothing to do",
    ]
    assert dict(res.applied) == {"split": 1, "reject_face": 1}
    assert dict(res.skipped) == {"reject_face": 2, "merge": 2}
    assert res.curated == {"a1": "split#3;reject_face#4"} and list(res.rejects) == ["a1"]
    rec = res.record(_cur([]), "b" * 64)
    assert rec["n_warnings"] == 5 and rec["faces_rejected"] == 1 and rec["applied"] == {"reject_face": 1, "split": 1}


@pytest.mark.parametrize("doc, field", [
    ("not json", "(document)"),
    ({"format": "celebref.curation/0", "dataset_hash": HASH, "actions": []}, "format"),
    ({"format": "celebref.curation/1", "dataset_hash": "xyz", "actions": []}, "dataset_hash"),
    ({"format": "celebref.curation/1", "dataset_hash": HASH, "actions": [{"seq": 1, "action": "explode"}]},
     "actions[0]"),
    ({"format": "celebref.curation/1", "dataset_hash": HASH,
      "actions": [{"seq": 1, "action": "merge", "face_id": "a"}]}, "actions[0].into"),
    ({"format": "celebref.curation/1", "dataset_hash": HASH,
      "actions": [{"seq": "1", "action": "reject_face", "face_id": "a"}]}, "actions[0].seq"),
    ({"format": "celebref.curation/1", "dataset_hash": HASH,
      "actions": [{"seq": 1, "action": "reject_face", "face_id": "a", "extra": 1}]}, "actions[0].extra"),
    ({"format": "celebref.curation/1", "dataset_hash": HASH,
      "actions": [{"seq": 1, "action": "reject_face", "face_id": "a"},
                  {"seq": 1, "action": "reject_face", "face_id": "b"}]}, "(document)"),
])
def test_load_curation_rejects_bad_files(tmp_path, doc, field):
    p = tmp_path / "curation.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(FormatError) as ei:
        load_curation(p)
    assert ei.value.field == field and not ei.value.writing, str(ei.value)
    assert str(ei.value).startswith(f"{p}: field '{field}': expected ")


def test_build_cli_refuses_a_bad_curation_file_before_any_work(tmp_path, capsys):
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"format": "celebref.curation/1", "dataset_hash": HASH, "actions": [
        {"seq": 1, "action": "split", "face_ids": []}]}))
    out = tmp_path / "never"
    rc = celebref_main(["build", "--source", str(tmp_path), "--out", str(out), "--curation", str(bad), "-q"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and err.startswith(f"error: {bad}: field 'actions[0].face_ids'"), err
    assert not out.exists()


# ------------------------------------------------------------------------------------------ real build
@pytest.fixture(scope="module")
def reviewed(small_built, tmp_path_factory):
    """A private copy of the small build (cache included) and its review page."""
    ds = tmp_path_factory.mktemp("review") / "ds"
    shutil.copytree(small_built.out, ds, symlinks=True)
    assert celebref_main(["review", str(ds), "-q"]) == 0
    return ds


def _page_data(page: Path) -> dict:
    text = page.read_text()
    start = text.index('<script type="application/json" id="review-data">') + len(
        '<script type="application/json" id="review-data">')
    return json.loads(text[start:text.index("</script>", start)])


def test_review_cli_writes_the_page(reviewed, small_built):
    page = reviewed / "review.html"
    data = _page_data(page)
    m = small_built.manifest
    kept = m[m["kept"]]
    assert data["dataset_hash"] == small_built.info["dataset_hash"] and data["format"] == "celebref.curation/1"
    assert sorted(i["identity"] for i in data["identities"]) == sorted(kept["identity"].unique())
    for ident in data["identities"]:
        faces = ident["faces"]
        assert sorted(f["face_id"] for f in faces) == sorted(kept.loc[kept["identity"] == ident["identity"], "face_id"])
        assert [f["d"] for f in faces] == sorted(f["d"] for f in faces)  # ordered by distance to the centre
        for f in faces:  # relative links that resolve from the page's folder
            assert not f["src"].startswith("/") and (page.parent / f["src"]).is_file()
    # flagged identities come first
    flagged = [bool(i["flags"]) for i in data["identities"]]
    assert flagged == sorted(flagged, reverse=True)
    assert "http://" not in page.read_text() and "https://" not in page.read_text()


def test_review_without_cache_embeds_again_and_links_from_elsewhere(reviewed, tmp_path, capsys):
    """A copy without cache/ (moved or published): the faces are embedded again from their aligned images, with the
    same distances as the cached embeddings; a page written outside the dataset links the images relatively."""
    import numpy as np

    from bfrcore.dataset import FaceDataset
    from celebref.review.analysis import load_embeddings

    bare = tmp_path / "bare"
    shutil.copytree(reviewed, bare, symlinks=True, ignore=shutil.ignore_patterns("cache", "review.html"))
    cached, origin = load_embeddings(FaceDataset.load(reviewed))
    again, origin2 = load_embeddings(FaceDataset.load(bare))
    assert origin == {"cache": len(cached), "computed": 0} and origin2 == {"cache": 0, "computed": len(cached)}
    assert sorted(again) == sorted(cached)
    assert max(float(np.abs(again[f] - cached[f]).max()) for f in cached) < 1e-4
    page = tmp_path / "pages" / "deep" / "r.html"
    assert celebref_main(["review", str(bare), "--out", str(page)]) == 0
    assert f"{len(cached)} computed" in page.read_text() and f"0 read from the build cache, {len(cached)} computed" in capsys.readouterr().out
    data = _page_data(page)
    srcs = [f["src"] for i in data["identities"] for f in i["faces"]]
    assert all(s.startswith("../../bare/images/") and (page.parent / s).is_file() for s in srcs), srcs[:3]
    assert data == {**_page_data(reviewed / "review.html"), "identities": data["identities"]}
    assert celebref_main(["review", str(bare), "--out", str(tmp_path / "x.txt")]) == 2


def test_review_cli_bad_dataset_is_exit_2(tmp_path, capsys):
    assert celebref_main(["review", str(tmp_path / "missing")]) == 2
    assert "not a dataset folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ headless Chromium
def _browser():
    from tests.leaderboard.browser import find_browser

    chrome, driver = find_browser()
    if chrome is None or driver is None:
        pytest.skip("headless Chromium not installed: run `bash scripts/ensure_system_deps.sh` (Debian packages "
                    "chromium, chromium-driver)")
    return chrome, driver


LIVE_SECTIONS = ("return Array.from(document.querySelectorAll('section.ident:not([data-state=gone])')).map(s => "
                 "[s.dataset.identity, Array.from(s.querySelectorAll('figure:not(.gone)')).map(f => f.dataset.faceId)"
                 "]);")


def _click(b, css: str) -> None:
    els = b.find_all(css)
    assert len(els) == 1, (css, len(els))
    b.click(els[0])


def _rebuild(sources: list[str], ds: Path, curation: Path, tmp_path: Path) -> int:
    import yaml

    from tests.celebref.build_support import SMALL_CFG

    cfg = tmp_path / "build.yaml"
    cfg.write_text(yaml.safe_dump(SMALL_CFG))
    return celebref_main(["build", *[a for s in sources for a in ("--source", s)], "--out", str(ds), "--config",
                          str(cfg), "--curation", str(curation), "--workers", "1", "-q"])


def test_review_page_in_chromium_curate_and_rebuild(reviewed, small_built, small_sources, tmp_path):
    """Open review.html from file://, reject one face, merge two identities, save curation.json (download and
    <pre>), rebuild with --curation on the same sources, check manifest, identities and build.json; the rebuilt
    dataset's merged identity (two people) is flagged first by the next review."""
    from tests.leaderboard.browser import Chrome

    chrome, driver = _browser()
    ds = tmp_path / "ds"
    shutil.copytree(reviewed, ds, symlinks=True)  # the rebuild writes here (stage caches reused)
    page = ds / "review.html"
    data = _page_data(page)
    by_name = {i["name"]: i for i in data["identities"]}
    chq_a, chq_b, obama = by_name["00075"], by_name["00089"], by_name["obama"]
    victim = chq_a["faces"][-1]["face_id"]  # the face farthest from its centre
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with Chrome(chrome, driver) as b:
        b._call("POST", f"/session/{b.session}/goog/cdp/execute",
                {"cmd": "Browser.setDownloadBehavior", "params": {"behavior": "allow", "downloadPath": str(downloads)}})
        b.logs()
        b.get(page.as_uri())
        assert b.console_errors() == []
        assert b.execute("return document.documentElement.getAttribute('data-ready');") == "1"
        sizes = b.execute("return Array.from(document.images).map(i => [i.complete, i.naturalWidth]);")
        assert len(sizes) == sum(len(i["faces"]) for i in data["identities"])
        assert all(c and w > 0 for c, w in sizes), sizes  # every face image loads from file://
        # 1. reject one face
        _click(b, f'figure[data-face-id="{victim}"] button.reject-face')
        # 2. merge obama into 00089: pick the target in the identity's select, click merge
        sec = f'section[data-identity="{obama["identity"]}"]'
        _click(b, f'{sec} select.merge-target option[value="{chq_b["identity"]}"]')
        _click(b, f"{sec} button.merge")
        live = dict(b.execute(LIVE_SECTIONS))
        assert sorted(live) == sorted([chq_a["identity"], chq_b["identity"]])
        assert victim not in live[chq_a["identity"]]
        assert sorted(live[chq_b["identity"]]) == sorted(f["face_id"] for f in chq_b["faces"] + obama["faces"])
        # 3. save
        _click(b, "#save")
        shown = b.execute("return document.getElementById('curation-json').textContent;")
        got = downloads / "curation.json"
        deadline = time.monotonic() + 60  # the download lands asynchronously (slow on a loaded 2-core machine)
        while time.monotonic() < deadline:
            try:
                if json.loads(got.read_text()) == json.loads(shown):
                    break
            except (OSError, ValueError):  # not there yet, or still being written
                pass
            time.sleep(0.1)
        assert got.is_file(), list(downloads.iterdir())
        assert json.loads(got.read_text()) == json.loads(shown)
        assert b.console_errors() == []
    doc = json.loads(shown)
    assert doc["dataset_hash"] == small_built.info["dataset_hash"]
    assert [{k: v for k, v in a.items()} for a in doc["actions"]] == [
        {"seq": 1, "action": "reject_face", "face_id": victim},
        {"seq": 2, "action": "merge", "face_id": min(f["face_id"] for f in obama["faces"]),
         "into": min(f["face_id"] for f in chq_b["faces"])}]

    # 4. rebuild with the saved file
    assert _rebuild(small_sources, ds, got, tmp_path) == 0
    m = pd.read_parquet(ds / "manifest.parquet")
    row = m.set_index("face_id").loc[victim]
    assert (bool(row["kept"]), row["reject_stage"], row["reject_reason"], row["curated"]) == \
        (False, "curation", "curation_reject_face", "reject_face#1")
    kept = m[m["kept"]]
    ident_of = dict(zip(kept["face_id"], kept["identity"]))
    merged = {ident_of[f["face_id"]] for f in chq_b["faces"] + obama["faces"]}
    assert len(merged) == 1  # one identity now
    # the merge moves the whole clustered identity, faces later dropped by quality/dedup included
    merged_rows = m[m["curated"] == "merge#2"]
    assert {f["face_id"] for f in obama["faces"]} <= set(merged_rows["face_id"])
    assert set(merged_rows["name"]) == {"obama"}
    assert set(m["curated"].dropna()) == {"merge#2", "reject_face#1"}
    assert m.loc[m["face_id"].isin([f["face_id"] for f in chq_b["faces"]]), "curated"].isna().all()
    untouched = [f["face_id"] for f in chq_a["faces"] if f["face_id"] != victim]
    assert m.loc[m["face_id"].isin(untouched), "curated"].isna().all() and set(untouched) <= set(kept["face_id"])
    # the page's final state is what the build produced
    final = {tuple(sorted(g["face_id"])) for _, g in kept.groupby("identity")}
    assert final == {tuple(sorted(v)) for v in live.values()}
    idents = pd.read_parquet(ds / "identities.parquet").set_index("identity")
    (mid,) = merged
    assert idents.loc[mid, "name"] == "00089" and list(idents.loc[mid, "aliases"]) == ["obama"]
    assert len(idents) == 2
    info = json.loads((ds / "build.json").read_text())
    import hashlib

    assert info["curation"]["file_sha256"] == hashlib.sha256(got.read_bytes()).hexdigest()
    assert (info["curation"]["applied"], info["curation"]["faces_curated"], info["curation"]["faces_rejected"],
            info["curation"]["n_warnings"]) == ({"reject_face": 1, "merge": 1}, 1 + len(merged_rows), 1, 0)
    assert info["reject_reasons"]["curation"] == {"curation_reject_face": 1}
    from bfrcore.dataset import FaceDataset

    FaceDataset.load(ds)  # the curated dataset follows the contract

    # 5. the next review flags the merged identity (two people) first
    assert celebref_main(["review", str(ds), "-q"]) == 0
    data2 = _page_data(page)
    first = data2["identities"][0]
    assert first["identity"] == mid and first["impure"], first["flags"]
    assert (first["name"], first["aliases"]) == ("00089", ["obama"])
    assert any(f.startswith("bimodal: two groups of 4 and 3 faces") for f in first["flags"]), first["flags"]


def test_review_page_matches_apply_curation(reviewed, tmp_path):
    """Split (select two faces), merge the new identity into another, reject an identity, reject a face and undo
    it: the page's final grouping equals what apply_curation makes of the saved file (the page and the build share
    the semantics)."""
    from tests.leaderboard.browser import Chrome

    chrome, driver = _browser()
    data = _page_data(reviewed / "review.html")
    by_name = {i["name"]: i for i in data["identities"]}
    a, b_, c = by_name["00075"], by_name["00089"], by_name["obama"]
    picked = [f["face_id"] for f in a["faces"][:2]]
    with Chrome(chrome, driver) as b:
        b.logs()
        b.get((reviewed / "review.html").as_uri())
        sec = f'section[data-identity="{a["identity"]}"]'
        assert b.execute(f"return document.querySelector('{sec} button.split').disabled;") is True
        for f in picked:
            _click(b, f'figure[data-face-id="{f}"] img')
        assert b.execute(f"return document.querySelector('{sec} button.split').textContent;") == \
            "split off 2 selected"
        _click(b, f"{sec} button.split")
        (new_key,) = [k for k, _ in b.execute(LIVE_SECTIONS) if k.startswith("split#")]
        _click(b, f'section[data-identity="{new_key}"] select.merge-target option[value="{c["identity"]}"]')
        _click(b, f'figure[data-face-id="{c["faces"][0]["face_id"]}"] img')  # re-renders; the choice stays
        assert b.execute(f"return document.querySelector('section[data-identity=\\'{new_key}\\'] "
                         f"select.merge-target').value;") == c["identity"]
        _click(b, f'section[data-identity="{new_key}"] button.merge')
        _click(b, f'section[data-identity="{b_["identity"]}"] button.reject-identity')
        _click(b, f'figure[data-face-id="{c["faces"][0]["face_id"]}"] button.reject-face')
        _click(b, "#undo")
        live = dict(b.execute(LIVE_SECTIONS))
        _click(b, "#save")
        doc = json.loads(b.execute("return document.getElementById('curation-json').textContent;"))
        assert b.console_errors() == []
    assert [x["action"] for x in doc["actions"]] == ["split", "merge", "reject_identity"]
    assert doc["actions"][0]["face_ids"] == sorted(picked)
    assert sorted(live[c["identity"]]) == sorted(picked + [f["face_id"] for f in c["faces"]])
    assert b_["identity"] not in live
    # the same file through the build's code path, on the reviewed identities
    groups = {i["identity"]: {"name": i["name"], "aliases": [], "cluster": 0, "faces": sorted(f["face_id"]
              for f in i["faces"])} for i in data["identities"]}
    ig = IdentityGroups({f: 0 for g in groups.values() for f in g["faces"]},
                        {f: k for k, g in groups.items() for f in g["faces"]}, groups, {}, 0.65)
    p = tmp_path / "curation.json"
    p.write_text(json.dumps(doc))
    res = apply_curation(ig, load_curation(p)[0])
    assert res.warnings == []
    assert sorted(tuple(g["faces"]) for g in res.groups.groups.values()) == \
        sorted(tuple(sorted(v)) for v in live.values())
    assert set(res.rejects) == {f["face_id"] for f in b_["faces"]}


def test_review_flags_impure_and_near_merge_identities(reviewed, small_sources, tmp_path, capsys):
    """Curate the small build into known mistakes (obama merged into 00089: two people in one identity; 00075 split
    in two halves: one person in two identities), rebuild, review: the merged identity is flagged impure and comes
    first, the two halves are a near-merge pair, nothing else is flagged."""
    from bfrcore.dataset import FaceDataset
    from celebref.review.analysis import review_dataset

    data = _page_data(reviewed / "review.html")
    by_name = {i["name"]: i for i in data["identities"]}
    half = sorted(f["face_id"] for f in by_name["00075"]["faces"])[:2]
    cur = tmp_path / "curation.json"
    cur.write_text(json.dumps({"format": "celebref.curation/1", "dataset_hash": data["dataset_hash"], "actions": [
        {"seq": 1, "action": "merge", "face_id": by_name["obama"]["faces"][0]["face_id"],
         "into": by_name["00089"]["faces"][0]["face_id"]},
        {"seq": 2, "action": "split", "face_ids": half}]}))
    ds = tmp_path / "ds"
    shutil.copytree(reviewed, ds, symlinks=True)
    assert _rebuild(small_sources, ds, cur, tmp_path) == 0
    capsys.readouterr()
    assert celebref_main(["review", str(ds)]) == 0
    assert "1 impure, 1 near-merge pair(s)" in capsys.readouterr().out
    rv = review_dataset(FaceDataset.load(ds))
    kept = pd.read_parquet(ds / "manifest.parquet").query("kept")
    ident_of = dict(zip(kept["face_id"], kept["identity"]))
    merged = ident_of[by_name["obama"]["faces"][0]["face_id"]]
    halves = sorted({ident_of[f["face_id"]] for f in by_name["00075"]["faces"]})
    assert len(halves) == 2 and ident_of[half[0]] == ident_of[half[1]]
    assert [(r.identity, r.impure, bool(r.near)) for r in rv.identities] == \
        [(merged, True, False), (halves[0], False, True), (halves[1], False, True)]
    assert [(a, b) for a, b, _ in rv.near_pairs] == [tuple(halves)]
    # not a borderline call: the halves' centres are 0.31 apart (dlib, threshold 0.65)
    assert rv.near_pairs[0][2] < rv.threshold - 0.2
    assert any(f.startswith("bimodal: two groups of") for f in rv.identities[0].flags), rv.identities[0].flags
    # the same decisions in another file order give the same dataset (applied by seq)
    doc = json.loads(cur.read_text())
    doc["actions"].reverse()
    cur2 = tmp_path / "curation2.json"
    cur2.write_text(json.dumps(doc, indent=1))
    ds2 = tmp_path / "ds2"
    shutil.copytree(reviewed, ds2, symlinks=True)
    assert _rebuild(small_sources, ds2, cur2, tmp_path) == 0
    info1, info2 = (json.loads((d / "build.json").read_text()) for d in (ds, ds2))
    assert info1["dataset_hash"] == info2["dataset_hash"]
    assert info1["curation"]["file_sha256"] != info2["curation"]["file_sha256"]
    cols = ["face_id", "kept", "identity", "image_id", "reject_stage", "reject_reason", "curated"]
    pd.testing.assert_frame_equal(pd.read_parquet(ds / "manifest.parquet")[cols],
                                  pd.read_parquet(ds2 / "manifest.parquet")[cols])
