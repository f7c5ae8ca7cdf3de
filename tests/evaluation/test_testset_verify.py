"""Test-set integrity before scoring: `bench evaluate` / `bench score` refuse LQ files that changed, vanished or
appeared after `bench degrade` (rc 2 naming them) unless --no-verify, which summary.json records."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bfrcli.bench import main
from bfrcore.errors import InputError
from bfrcore.imageio import read_image, write_png
from bfrcore.testset import CHECKSUMS_FILE, TestSet
from bfrcore.testset_verify import TestsetMismatchError, require_verified, verify_testset


@pytest.fixture(scope="module")
def pristine(mini_dataset, tmp_path_factory):
    from degradations.testset import generate_testset

    out = tmp_path_factory.mktemp("tsv") / "x8"
    generate_testset(mini_dataset, "celebref-x8", 0, out, limit=3)
    return out


@pytest.fixture
def testset(pristine, tmp_path):
    """A private copy to damage (the recorded absolute dataset root still points at the mini dataset)."""
    dst = tmp_path / "x8"
    shutil.copytree(pristine, dst)
    return dst


def _edit_one_pixel(path):
    img = read_image(path).copy()
    img[0, 0, 0] ^= 1
    write_png(path, img)


def _evaluate(testset, out, *extra):
    return main(["evaluate", "--model", "bicubic", "--config", "paper", "--testset", str(testset), "--out",
                 str(out), "--metrics", "psnr", "--bootstrap", "50", "--device", "cpu", "-q", *extra])


def test_pristine_test_set_verifies_and_is_recorded(testset, tmp_path):
    rep = verify_testset(testset)
    assert rep.ok and rep.n_files == 3 and rep.message() == ""
    assert _evaluate(testset, tmp_path / "res") == 0
    s = json.loads((tmp_path / "res" / "bicubic" / "x8" / "generic" / "summary.json").read_text())
    assert s["testset_verified"] is True and s["testset"]["hash"] == TestSet.load(testset).hash


def test_edited_lq_is_refused_by_evaluate_and_score(testset, tmp_path, capsys):
    iid = TestSet.load(testset).image_ids[1]
    _edit_one_pixel(testset / "lq" / f"{iid}.png")
    rep = verify_testset(testset)
    assert rep.changed == [iid] and not rep.missing and not rep.extra and not rep.inconsistent
    assert _evaluate(testset, tmp_path / "res") == 2
    err = capsys.readouterr().err
    assert f"lq/{iid}.png" in err and "changed since `bench degrade`" in err and "--no-verify" in err
    assert not (tmp_path / "res").exists() or not list((tmp_path / "res").rglob("summary.json"))
    pred = tmp_path / "pred"
    pred.mkdir()
    assert main(["score", "--pred", str(pred), "--testset", str(testset), "--out", str(tmp_path / "res"),
                 "--metrics", "psnr", "-q"]) == 2
    assert f"lq/{iid}.png" in capsys.readouterr().err


def test_no_verify_scores_and_records_it(testset, tmp_path):
    ids = TestSet.load(testset).image_ids
    _edit_one_pixel(testset / "lq" / f"{ids[0]}.png")
    assert _evaluate(testset, tmp_path / "res", "--no-verify") == 0
    d = tmp_path / "res" / "bicubic" / "x8" / "generic"
    s = json.loads((d / "summary.json").read_text())
    assert s["testset_verified"] is False and s["n_scored"] == 3
    assert main(["score", "--pred", str(d / "restored"), "--testset", str(testset), "--out", str(tmp_path / "res"),
                 "--name", "copy", "--metrics", "psnr", "--no-verify", "-q"]) == 0
    s2 = json.loads((tmp_path / "res" / "copy" / "x8" / "generic" / "summary.json").read_text())
    assert s2["testset_verified"] is False


def test_missing_and_extra_lq_files(testset, tmp_path, capsys):
    ids = TestSet.load(testset).image_ids
    (testset / "lq" / f"{ids[2]}.png").unlink()
    shutil.copyfile(testset / "lq" / f"{ids[0]}.png", testset / "lq" / "intruder.png")
    rep = verify_testset(testset)
    assert rep.missing == [ids[2]] and rep.extra == ["intruder"] and not rep.changed
    assert _evaluate(testset, tmp_path / "res") == 2
    err = capsys.readouterr().err
    assert f"lq/{ids[2]}.png" in err and "lq/intruder.png" in err


def test_checksums_edited_to_match_a_changed_file_are_caught(testset):
    """Updating checksums.sha256 after editing a file does not launder it: the recorded testset_hash and
    params.parquet still name the original bytes."""
    from bfrcore.imageio import file_sha256
    from bfrcore.testset import format_checksums

    ts = TestSet.load(testset)
    iid = ts.image_ids[0]
    _edit_one_pixel(testset / "lq" / f"{iid}.png")
    sums = ts.checksums()
    sums[iid] = file_sha256(testset / "lq" / f"{iid}.png")
    (testset / CHECKSUMS_FILE).write_text(format_checksums(sums))
    rep = verify_testset(testset)
    assert not rep.changed and not rep.ok
    assert any("testset_hash" in m for m in rep.inconsistent) and any("lq/" + iid in m for m in rep.inconsistent)
    with pytest.raises(TestsetMismatchError, match="testset_hash") as err:
        require_verified(testset)
    assert isinstance(err.value, InputError)  # exit 2 in the CLIs
    assert require_verified(testset, verify=False) == {"testset_verified": False}


def test_damaged_records_are_a_report_not_a_crash(testset):
    (testset / CHECKSUMS_FILE).write_text("not a checksum line\n")
    rep = verify_testset(testset)
    assert not rep.ok and any(CHECKSUMS_FILE in m for m in rep.inconsistent)
    assert np.isfinite(rep.seconds)
