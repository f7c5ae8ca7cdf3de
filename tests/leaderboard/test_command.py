"""`bench leaderboard` end to end on real RESULTS folders: every output, plots, grids, a self-contained HTML page."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bfrcli.bench import main
from leaderboard import grids as grids_mod


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def test_outputs_exist(lb_out):
    out = lb_out["out"]
    assert lb_out["rc"] == 0, lb_out["stdout"]
    assert "== bench leaderboard: 12 done" in lb_out["stdout"]
    for name in ("results.parquet", "leaderboard.md", "leaderboard.csv", "aggregator.csv", "index.html",
                 "skipped.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "skipped.json").read_text()) == []
    df = pd.read_parquet(out / "results.parquet")
    assert df["run_id"].nunique() == 12
    recs = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert len(recs) == 12 and {r["Dataset"] for r in recs} == {"celebref-x4", "celebref-x8"}


def test_plots_are_images(lb_out):
    plots = lb_out["out"] / "plots"
    names = sorted(p.name for p in plots.iterdir())
    for mode in ("generic", "specific"):
        for kind in ("severity", "tradeoff", "identity"):
            assert f"{kind}_{mode}.png" in names and f"{kind}_{mode}.svg" in names
    for p in plots.glob("*.png"):
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 200
            # not a blank canvas
            assert np.asarray(im.convert("L")).std() > 5
    svg = (plots / "tradeoff_generic.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg


def test_grid_layout_and_content(lb_out, lb_inputs):
    """A row per chosen image; the LQ tile is the test set's LQ image and the model tile its restored output."""
    g = lb_out["out"] / "grids"
    files = sorted(g.glob("*.png"))
    assert len(files) == 4
    f = next(p for p in files if "celebref-x8" in p.name and p.name.endswith("_generic.png"))
    tile, n_ids, n_cols = 96, len(lb_out["ids"]), 1 + 3 + 1 + 2
    im = np.asarray(Image.open(f).convert("RGB"))
    pad, lab = grids_mod.PAD, grids_mod.LABEL_H
    assert im.shape == (pad + n_ids * (tile + lab + pad), pad + n_cols * (tile + pad), 3)
    from bfrcore.imageio import read_image

    iid = lb_out["ids"][1]
    y0 = pad + 1 * (tile + lab + pad) + lab
    lq = read_image(lb_inputs["root"] / "testsets" / "celebref-x8" / "lq" / f"{iid}.png")
    exp = np.asarray(grids_mod._tile(lq, tile))
    got = im[y0:y0 + tile, pad:pad + tile]
    assert np.abs(got.astype(int) - exp).mean() < 1.0
    # column 2 = first model in label order: asffnet
    x0 = pad + 1 * (tile + pad)
    rest = read_image(lb_inputs["results"] / "asffnet" / "celebref-x8" / "generic" / "restored" / f"{iid}.png")
    assert np.abs(im[y0:y0 + tile, x0:x0 + tile].astype(int) - np.asarray(grids_mod._tile(rest, tile))).mean() < 1.0
    # and it differs from the LQ tile (the models really differ)
    assert np.abs(im[y0:y0 + tile, x0:x0 + tile].astype(int) - exp).mean() > 0.5


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.srcs, self.hrefs, self.stack, self.errors = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "src" in a:
            self.srcs.append(a["src"])
        if "href" in a:
            self.hrefs.append(a["href"])


def test_html_is_self_contained_and_complete(lb_out):
    text = (lb_out["out"] / "index.html").read_text(encoding="utf-8")
    p = _Collect()
    p.feed(text)
    p.close()
    tags = [t for t, _ in p.tags]
    assert tags.count("table") == 4
    assert all(s.startswith("data:image/png;base64,") for s in p.srcs) and len(p.srcs) == 6 + 4
    assert all(h.startswith(("#", "data:")) for h in p.hrefs)
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text)
    assert "Content-Security-Policy" in text
    rows = [a for t, a in p.tags if t == "tr" and "data-model" in a]
    assert len(rows) == 12
    assert all(len(a["data-testset"]) == 64 for a in rows)
    assert {a["data-weights"] for a in rows if a["data-model"].startswith("dmdnet")} != {""}
    ths = [a for t, a in p.tags if t == "th" and "data-metric" in a]
    assert {a["data-metric"]: a.get("data-hib") for a in ths[:5]} == {
        "psnr": "true", "ssim": "true", "lpips": "false", "fid": None, "ids": "false"}
    assert text.count('class="num best"') == 4 * 4  # one best per available metric per table
    assert "95% CI [" in text


def test_usage_errors_and_skip_report(lb_inputs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out, err = _run(["leaderboard", "--results", str(empty), "--out", str(tmp_path / "o")])
    assert rc == 2 and "no valid summary.json" in err
    rc, _, err = _run(["leaderboard", "--results", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "no such results folder" in err
    # one good run + one malformed: exit 0, the bad one reported in the summary, the html and skipped.json
    res = tmp_path / "res"
    shutil.copytree(lb_inputs["results"] / "dmdnet" / "celebref-x4" / "specific", res / "good")
    (res / "bad").mkdir()
    (res / "bad" / "summary.json").write_text(json.dumps({"format": "celebref.summary/1", "model": "x"}))
    rc, out, err = _run(["leaderboard", "--results", str(res), "--out", str(tmp_path / "o2"), "--images", "none"])
    assert rc == 0, err
    assert "skipped 1: malformed summary 1" in out and "field 'mode': expected a value (required key)" in out
    sk = json.loads((tmp_path / "o2" / "skipped.json").read_text())
    assert len(sk) == 1 and sk[0]["path"].endswith("bad/summary.json")
    assert "field &#x27;mode&#x27;: expected" in (tmp_path / "o2" / "index.html").read_text()
    assert not (tmp_path / "o2" / "grids").exists()


def test_grid_finds_moved_testset_by_hash(lb_inputs, tmp_path):
    """When testset.path is stale, --testsets roots are searched for a testset.json with the same hash."""
    res = tmp_path / "res"
    shutil.copytree(lb_inputs["results"] / "dmdnet" / "celebref-x4" / "generic", res / "r")
    s = res / "r" / "summary.json"
    d = json.loads(s.read_text())
    d["testset"]["path"] = str(tmp_path / "moved-away")
    s.write_text(json.dumps(d))
    rc, out, err = _run(["leaderboard", "--results", str(res), "--out", str(tmp_path / "a"), "--images",
                         lb_inputs["ids"][0], "--n-images", "1"])
    assert rc == 0, err
    assert "not found" in out  # the grid notes the missing test set (LQ/GT/refs drawn as 'missing')
    rc, out, err = _run(["leaderboard", "--results", str(res), "--out", str(tmp_path / "b"), "--images",
                         lb_inputs["ids"][0], "--testsets", str(lb_inputs["root"] / "testsets")])
    assert rc == 0, err
    assert "not found" not in out
    a = np.asarray(Image.open(next((tmp_path / "a" / "grids").glob("*.png"))).convert("L"), dtype=float)
    b = np.asarray(Image.open(next((tmp_path / "b" / "grids").glob("*.png"))).convert("L"), dtype=float)
    assert a.shape == b.shape and np.abs(a - b).mean() > 1.0


def test_unsafe_image_id_is_not_read(lb_inputs, tmp_path):
    rc, _, err = _run(["leaderboard", "--results", str(lb_inputs["results"] / "bicubic"), "--out",
                         str(tmp_path / "o"), "--images", "../../../../etc/passwd", "--max-refs", "0"])
    assert rc == 0, err
    assert "no restored image" in (tmp_path / "o" / "index.html").read_text()


@pytest.mark.parametrize("bad", ["--tile=8", "--n-images=0"])
def test_bad_numbers(lb_inputs, tmp_path, bad):
    rc, _, err = _run(["leaderboard", "--results", str(lb_inputs["results"]), "--out", str(tmp_path / "o"), bad])
    assert rc == 2 and "must be" in err


def test_library_entry_point(lb_inputs, tmp_path):
    """`leaderboard.board.build_leaderboard` is the library side of the command: its options in one dataclass,
    nothing to rank an InputError of its own (not the CLI's UsageError)."""
    from bfrcore.cliutil import UsageError
    from bfrcore.errors import InputError
    from leaderboard.board import LeaderboardOptions, NoResultsError, build_leaderboard

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoResultsError, match="no valid summary.json") as e:
        build_leaderboard([empty], tmp_path / "o")
    assert isinstance(e.value, InputError) and not isinstance(e.value, UsageError)
    o = build_leaderboard([lb_inputs["results"]], tmp_path / "o2",
                          LeaderboardOptions(grids=False, title="Library board"))
    assert o.tables and not o.grids and not (tmp_path / "o2" / "grids").exists()
    assert o.results.is_file() and o.markdown.is_file() and o.csv.is_file() and o.skipped_json.is_file()
    assert "<title>Library board</title>" in o.html.read_text()
