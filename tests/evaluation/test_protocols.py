"""Protocols: list/show through the CLI, recipes that regenerate byte-identical test sets, `--protocol` end to end
on real faces (mini_dataset, bicubic), unregistered metrics reported unavailable, published rows with differences
on the leaderboard, the shipped celebref-hq-v1 split and its rule, DMDNet's landmark-failure subset."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from bfrcli.bench import main
from bfrcore import celebrefhq_split as cs
from evaluation.protocols import get_protocol, list_protocols

REQUIRED = {"refldm-ffhqref-moderate", "refldm-ffhqref-severe", "refldm-celeba-test-ref", "celeba-test",
            "celebref-hq-v1", "realworld-nr"}


# ----------------------------------------------------------------------------------------------- list / show
def test_list_and_show_through_the_cli(capsys):
    assert main(["protocols", "list"]) == 0
    out = capsys.readouterr().out
    assert REQUIRED <= set(list_protocols())
    for name in REQUIRED:
        assert f"{name}@1" in out
    assert main(["protocols", "show", "refldm-ffhqref-severe"]) == 0
    out = capsys.readouterr().out
    # ReF-LDM Table 7, DMDNet row and footnote, exactly as printed
    assert "DMDNet       .185 / .162 / .511 / 72.66" in out and "214/857" in out
    assert "preset refldm-severe@1, seed 0, split test, 857 images, 150 identities" in out
    assert main(["protocols", "show", "refldm-ffhqref-moderate", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    p = get_protocol("refldm-ffhqref-moderate")
    assert doc["sha256"] == p.sha256 and doc["testset"]["preset"] == "refldm-moderate"
    dmd = next(r for r in doc["published"] if r["method"] == "DMDNet")
    assert dict(dmd["values"]) == {"ids_arcface": ".810", "flpips": ".096", "lpips_vgg": ".348", "fid": "36.60"}
    assert "29/857" in dmd["note"]
    assert main(["protocols", "show", "no-such-protocol"]) == 2


def test_protocol_presets_match_the_published_ranges():
    from degradations.presets import get_preset

    sev = get_preset(get_protocol("refldm-ffhqref-severe").testset.preset)
    mod = get_preset(get_protocol("refldm-ffhqref-moderate").testset.preset)
    ranges = lambda p: ((p.blur.sigma_x.lo, p.blur.sigma_x.hi), (p.resize.scale.lo, p.resize.scale.hi),
                        (p.noise.sigma.lo, p.noise.sigma.hi), (p.jpeg.quality.lo, p.jpeg.quality.hi))
    assert ranges(mod) == ((0, 8), (1, 8), (0, 15), (60, 100))
    assert ranges(sev) == ((8, 16), (8, 32), (0, 20), (30, 100))


# ----------------------------------------------------------------------------------------------- recipes
def test_recipe_regenerates_a_byte_identical_testset(mini_dataset, tmp_path):
    from bfrcore.testset import TestSet

    hashes, sums = [], []
    for k in range(2):
        out = tmp_path / f"t{k}"
        assert main(["protocols", "testset", "refldm-ffhqref-severe", "--dataset", str(mini_dataset), "--out",
                     str(out), "--limit", "3", "-q"]) == 0
        ts = TestSet.load(out)
        assert (ts.preset_name, ts.preset_version, ts.seed) == ("refldm-severe", "1", 0)
        hashes.append(ts.hash)
        sums.append({i: hashlib.sha256(ts.lq_path(i).read_bytes()).hexdigest() for i in ts.image_ids})
    assert hashes[0] == hashes[1] and sums[0] == sums[1] and len(sums[0]) == 3


def test_real_input_recipe_keeps_the_photo(mini_dataset, tmp_path):
    from bfrcore.dataset import FaceDataset
    from bfrcore.testset import TestSet

    assert main(["protocols", "testset", "realworld-nr", "--dataset", str(mini_dataset), "--out",
                 str(tmp_path / "nr"), "--limit", "2", "-q"]) == 0
    ts = TestSet.load(tmp_path / "nr")
    ds = FaceDataset.load(mini_dataset)
    for i in ts.image_ids:
        assert np.array_equal(ts.read_lq(i), ds.read(i))


# ----------------------------------------------------------------------------------------------- --protocol
@pytest.fixture(scope="module")
def celeba_run(mini_dataset, tmp_path_factory):
    """celeba-test recipe on 4 real faces; bicubic evaluated and its outputs scored as 'CodeFormer'."""
    root = tmp_path_factory.mktemp("proto")
    ts, res = root / "celeba4", root / "results"
    assert main(["protocols", "testset", "celeba-test", "--dataset", str(mini_dataset), "--out", str(ts),
                 "--limit", "4", "-q"]) == 0
    assert main(["evaluate", "--model", "bicubic", "--testset", str(ts), "--protocol", "celeba-test", "--out",
                 str(res), "--bootstrap", "50", "-q"]) == 0
    run = res / "bicubic" / "celeba4" / "generic"
    assert main(["score", "--pred", str(run / "restored"), "--testset", str(ts), "--protocol", "celeba-test",
                 "--name", "CodeFormer", "--out", str(res), "--bootstrap", "50", "-q"]) == 0
    return {"testset": ts, "results": res, "run": run, "root": root}


def test_evaluate_with_protocol_end_to_end(celeba_run):
    from evaluation.metrics import list_metrics

    p = get_protocol("celeba-test")
    s = json.loads((celeba_run["run"] / "summary.json").read_text())
    assert s["n_scored"] == 4 and s["mode"] == "generic"
    rec = s["protocol"]
    assert (rec["name"], rec["version"], rec["sha256"]) == ("celeba-test", "1", p.sha256)
    assert rec["conforms"] is False and "test set has 4 images; the protocol's has 3000" in rec["deviations"]
    known = set(list_metrics())
    for m in p.metrics:  # every protocol metric is either computed or listed unavailable with its reason
        assert m.column in s["metrics"] or m.metric in s["unavailable"], m
        if m.metric not in known:
            assert m.metric not in s["metrics"] and s["unavailable"][m.metric]
    assert "fid_ffhq" not in known and "one run computes one FID" in s["unavailable"]["fid_ffhq"]
    assert set(s["metrics"]) <= {m.column for m in p.metrics} | {"ids_arcface"}


def test_protocol_conflicts_are_usage_errors(celeba_run, tmp_path):
    ts = str(celeba_run["testset"])
    base = ["evaluate", "--model", "bicubic", "--testset", ts, "--out", str(tmp_path), "-q", "--protocol"]
    assert main(base + ["celeba-test", "--metrics", "psnr"]) == 2
    assert main(base + ["celeba-test", "--crop-border", "4"]) == 2
    assert main(base + ["celeba-test", "--mode", "specific"]) == 2
    assert main(base + ["refldm-ffhqref-severe"]) == 2  # the test set was made with gfpgan, not refldm-severe
    assert main(base + ["nope"]) == 2
    assert not list(tmp_path.iterdir())  # nothing was written



def test_protocol_conflicts_raise_library_errors(celeba_run):
    """apply_to_args is library code: a conflict is a ProtocolError (an InputError, exit 2), not the CLI's
    UsageError."""
    import argparse

    from bfrcore.cliutil import UsageError
    from bfrcore.errors import InputError
    from evaluation.protocols import ProtocolError
    from evaluation.protocols.apply import CLI_DEFAULTS, apply_to_args

    args = argparse.Namespace(protocol="celeba-test", testset=str(celeba_run["testset"]), dataset_root=None,
                              limit=None, mode="generic", **{**CLI_DEFAULTS, "crop_border": 4})
    with pytest.raises(ProtocolError, match="--crop-border 4: protocol celeba-test fixes it") as err:
        apply_to_args(args, command="evaluate")
    assert isinstance(err.value, InputError) and not isinstance(err.value, UsageError)
    args.crop_border, args.protocol = 0, "no-such-protocol"
    with pytest.raises(ProtocolError, match="--protocol: unknown protocol 'no-such-protocol'"):
        apply_to_args(args, command="evaluate")


def test_leaderboard_shows_published_rows_with_differences(celeba_run):
    out = celeba_run["root"] / "lb"
    assert main(["leaderboard", "--results", str(celeba_run["results"]), "--out", str(out), "--images", "none",
                 "-q"]) == 0
    md = (out / "leaderboard.md").read_text()
    for method in ("CodeFormer", "DifFace", "DiffBIR", "OSDFace"):
        assert f"| {method} *(published)* | Table 1 |" in md
    assert "| .3412 |" in md or " .3412 " in md  # CodeFormer LPIPS as printed
    assert "published: Wang et al., \"OSDFace" in md and "Δ = ours − published" in md
    assert "test set has 4 images; the protocol's has 3000" in md
    delta = next(ln for ln in md.splitlines() if ln.startswith("| Δ CodeFormer − CodeFormer (published)"))
    assert "bicubic" not in md.split("Δ ")[1].split("\n")[0]  # only the run named like a published method
    s = json.loads((celeba_run["results"] / "CodeFormer" / "celeba4" / "generic" / "summary.json").read_text())
    from leaderboard.published import fmt_diff

    header = next(ln for ln in md.splitlines() if ln.startswith("| Model |"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    cells = [c.strip() for c in delta.strip("|").split("|")]
    for col, pub in (("NIQE ↓", 4.5157), ("LMD ↓", 5.3819)):
        key = "niqe" if col.startswith("NIQE") else "lmd"
        if key in s["metrics"]:  # weights present: the difference is ours - published
            assert cells[cols.index(col)] == fmt_diff(s["metrics"][key]["mean"] - pub)
        else:
            assert cells[cols.index(col)] == "—"
    html = (out / "index.html").read_text()
    assert '<tbody class="published">' in html and "Δ CodeFormer − CodeFormer" in html


# ----------------------------------------------------------------------------------------------- celebref-hq-v1
def test_shipped_celebref_split_is_the_rule_on_the_documented_names():
    data = cs.SPLIT_FILE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == cs.SPLIT_SHA256
    assert cs.dumps(cs.split_document(cs.DOCUMENTED_NAMES)) == data
    doc = cs.shipped_document()
    assert len(doc["test_identities"]) == 150 and doc["n_train_identities"] == 855
    assert doc["identity_names"]["count"] == 1005 and doc["identity_names"]["confirmed"] is False
    assert set(doc["test_identities"]) <= set(cs.DOCUMENTED_NAMES)


def test_split_rule_on_a_copy(tmp_path, celebref_examples):
    # a copy with the documented names (one empty file each: only names are read) gives the shipped split
    copy = tmp_path / "copy"
    for n in cs.DOCUMENTED_NAMES:
        (copy / n).mkdir(parents=True)
        (copy / n / "0.png").write_bytes(b"")
    (copy / "00001" / "1.png").write_bytes(b"")
    out = tmp_path / "split.json"
    assert main(["protocols", "split", "--celebref-root", str(copy), "--out", str(out), "-q"]) == 0
    doc = json.loads(out.read_text())
    assert doc["matches_shipped"] is True and doc["test_identities"] == cs.shipped_test_identities()
    # the real example folders: too few identities for 150 test ones -> usage error, nothing written
    assert main(["protocols", "split", "--celebref-root", str(celebref_examples / "RefsImg"), "--out",
                 str(tmp_path / "x.json"), "-q"]) == 2
    assert not (tmp_path / "x.json").exists()
    # per-image references on the real example files: target excluded, all others, seeded order, stable
    files = cs.scan_copy(celebref_examples / "RefsImg")
    d1 = cs.split_document(list(files), n_test=2, confirmed=True, files=files)
    d2 = cs.split_document(list(reversed(list(files))), n_test=2, confirmed=True, files=files)
    assert cs.dumps(d1) == cs.dumps(d2) and len(d1["test_identities"]) == 2
    for name, refs in d1["references"].items():
        assert set(refs) == set(files[name])
        for target, lst in refs.items():
            assert target not in lst and sorted(lst + [target]) == sorted(files[name])


def test_celebref_recipe_selects_the_test_identities(mini_dataset, tmp_path):
    from bfrcore.dataset import FaceDataset
    from bfrcore.testset import TestSet

    ds = FaceDataset.load(mini_dataset)
    idents = set(ds.images["identity"].astype(str))
    assert idents & set(cs.shipped_test_identities()) == {"00146"}  # of the five example identities
    assert main(["protocols", "testset", "celebref-hq-v1", "--dataset", str(mini_dataset), "--out",
                 str(tmp_path / "c"), "-q"]) == 0
    ts = TestSet.load(tmp_path / "c")
    assert set(ds.images.loc[ts.image_ids, "identity"]) == {"00146"}
    assert len(ts.image_ids) == int((ds.images["identity"] == "00146").sum())


# ----------------------------------------------------------------------------------------------- landmarks
def test_landmark_subset_recomputes_means_without_fallbacks(tmp_path, capsys):
    from evaluation.protocols.landmarks import landmark_subset

    df = pd.DataFrame({"image_id": ["a", "b", "c", "d"], "status": ["ok", "ok", "ok", "failed"],
                       "reason": [None, None, None, "x"], "landmarks_source": ["detected", "mean_face", "manifest",
                                                                             None],
                       "n_refs": [2, 2, 2, 0], "seconds": [1.0, 1.0, 1.0, 0.0], "niqe": [4.0, 10.0, 6.0, np.nan]})
    df.to_parquet(tmp_path / "metrics.parquet")
    (tmp_path / "summary.json").write_text(json.dumps({"metrics": {"fid": {"mean": 40.0, "set_level": True}}}))
    r = landmark_subset(tmp_path)
    assert (r["n_ok"], r["n_detected"], r["n_fallback"]) == (3, 2, 1)
    assert r["metrics"]["niqe"] == {"all": pytest.approx(20 / 3), "detected_only": pytest.approx(5.0)}
    assert r["metrics"]["fid"]["detected_only"] is None
    assert main(["protocols", "landmark-subset", str(tmp_path)]) == 0
    assert "fallback (mean face) on 1" in capsys.readouterr().out
    assert main(["protocols", "landmark-subset", str(tmp_path / "nope")]) == 2


def test_celebref_build_emits_the_split(tmp_path, celebref_examples):
    """`celebref build --emit-split`: the split of the CelebRef-HQ-layout source, checked before any build work."""
    from bfrcli.celebref import main as celebref_main
    from celebref.commands.build import celebrefhq_root, split_of_copy, write_split

    copy = tmp_path / "copy"
    for n in cs.DOCUMENTED_NAMES:
        (copy / n).mkdir(parents=True)
        (copy / n / "0.png").write_bytes(b"")
    assert celebrefhq_root([str(tmp_path / "photos"), f"celebrefhq:{copy}"]) == copy
    assert celebrefhq_root([str(copy)]) == copy
    out = tmp_path / "split.json"
    note = write_split(split_of_copy(copy), out)
    assert "equals the shipped split" in note
    assert json.loads(out.read_text())["test_identities"] == cs.shipped_test_identities()
    # the 5 example identities are too few for 150 test ones: rc 2 before building, nothing written
    ds = tmp_path / "ds"
    rc = celebref_main(["build", "--source", str(celebref_examples / "RefsImg"), "--out", str(ds),
                        "--emit-split", str(tmp_path / "x.json"), "-q"])
    assert rc == 2 and not (tmp_path / "x.json").exists() and not (ds / "build.json").exists()
    # no CelebRef-HQ-layout source at all
    assert celebref_main(["build", "--source", str(tmp_path / "copy" / "00001"), "--out", str(ds),
                          "--emit-split", str(out), "-q"]) == 2
