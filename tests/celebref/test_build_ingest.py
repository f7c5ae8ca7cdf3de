"""Ingest of every local source type on real photos: folder tree (names), zip and tar archives (path escapes
refused), the CelebRef-HQ layout, Hugging Face datasets (save_to_disk and a parquet folder), exact duplicates; and
the config parser."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import pytest

from bfrcore.imageio import file_sha256
from celebref.ingest import SourceError, ingest_sources, parse_source
from celebref.pipeline.config import BuildConfig, ConfigError, load_config, parse_config
from tests.celebref.build_support import link_tree, shared_rows

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def lfw_tree(shared_faces, tmp_path_factory):
    rows = shared_rows(shared_faces, sources={"lfw_krasserm"})
    return link_tree(rows, shared_faces, tmp_path_factory.mktemp("lfw"), by="identity", per_group=3,
                     prefix_source=False)


def test_folder_names_and_duplicates(lfw_tree, tmp_path):
    cfg = BuildConfig()
    res = ingest_sources([parse_source(str(lfw_tree)), parse_source(f"folder:{lfw_tree}")], tmp_path, cfg)
    assert len(res.items) == 15  # 5 people x 3; the second copy of the folder collapses onto the first
    assert sorted({i["name"] for i in res.items}) == ["ariel_sharon", "arnold_schwarzenegger", "colin_powell",
                                                      "donald_rumsfeld", "george_w_bush"]
    dups = [r for r in res.rejects if r["reject_reason"] == "exact_duplicate"]
    assert len(dups) == 15 and all(d["duplicate_of"] for d in dups)
    for it in res.items:
        assert it["item_id"] == file_sha256(it["path"])
    # deterministic: same inputs, same items in the same order
    again = ingest_sources([parse_source(str(lfw_tree))], tmp_path, cfg)
    assert [i["item_id"] for i in again.items] == [i["item_id"] for i in res.items]


def test_zip_and_tar_archives(lfw_tree, tmp_path):
    files = sorted(p for p in lfw_tree.rglob("*.jpg"))
    z = tmp_path / "photos.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in files:
            zf.write(f, f"celebs/{f.parent.name}/{f.name}")  # one wrapping folder, skipped
    t = tmp_path / "photos.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        for f in files:
            tf.add(f.resolve(), f"{f.parent.name}/{f.name}")
    for arc in (z, t):
        res = ingest_sources([parse_source(str(arc))], tmp_path / "cache", BuildConfig())
        assert len(res.items) == 15, arc
        assert {i["name"] for i in res.items} >= {"colin_powell"}
        assert all(i["source_path"].startswith(str(arc)) and "!" in i["source_path"] for i in res.items)
        assert {i["item_id"] for i in res.items} == {file_sha256(f) for f in files}


def test_archive_path_escape_is_refused(tmp_path):
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("ok/a.jpg", b"x")
        zf.writestr("../../escaped.jpg", b"x")
    with pytest.raises(SourceError, match="unsafe"):
        ingest_sources([parse_source(str(bad))], tmp_path / "cache", BuildConfig())
    assert not (tmp_path / "escaped.jpg").exists() and not (tmp_path.parent / "escaped.jpg").exists()
    badtar = tmp_path / "evil.tar"
    with tarfile.open(badtar, "w") as tf:
        info = tarfile.TarInfo("link.jpg")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(SourceError):
        ingest_sources([parse_source(str(badtar))], tmp_path / "cache2", BuildConfig())


def test_celebrefhq_layout(celebref_examples, tmp_path):
    refs = celebref_examples / "RefsImg"
    spec = parse_source(str(refs))
    assert spec.kind == "celebrefhq"
    res = ingest_sources([spec], tmp_path, BuildConfig())
    assert len(res.items) == 49
    assert all(i["aligned"] and i["source_kind"] == "celebrefhq" for i in res.items)
    assert {i["name"] for i in res.items} == {"00075", "00086", "00089", "00121", "00146"}
    it = next(i for i in res.items if i["source_path"].endswith("00086/11.png"))
    assert it["provenance"]["celebref_identity"] == "00086" and it["provenance"]["celebref_n"] == 11


def test_hf_dataset_saved_and_parquet(lfw_tree, tmp_path):
    datasets = pytest.importorskip("datasets")
    files = sorted(str(p) for p in lfw_tree.rglob("*.jpg"))[:6]
    names = [Path(f).parent.name for f in files]
    ds = datasets.Dataset.from_dict({"image": files, "name": names}).cast_column("image", datasets.Image())
    saved = tmp_path / "saved"
    ds.save_to_disk(str(saved))
    pq_dir = tmp_path / "pq" / "data"
    pq_dir.mkdir(parents=True)
    ds.to_parquet(str(pq_dir / "train-00000-of-00001.parquet"))
    want = {file_sha256(f): n for f, n in zip(files, names)}
    for spec in (parse_source(str(saved)), parse_source(f"hf:{tmp_path / 'pq'}")):
        assert spec.kind == "hf"
        res = ingest_sources([spec], tmp_path / "cache", BuildConfig())
        got = {i["item_id"]: i["name"] for i in res.items}
        assert got == want, spec  # original encoded bytes kept (sha256 of the source files)
        assert all(Path(i["path"]).is_file() for i in res.items)
    with pytest.raises(SourceError):
        ingest_sources([parse_source("hf:no-such-owner/no-such-dataset")], tmp_path / "c3", BuildConfig())


def test_config_validation(tmp_path):
    assert parse_config({}) == BuildConfig()
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config({"quality": {"min_sharpnes": 3}})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config({"qualty": {}})
    with pytest.raises(ConfigError, match="expected a number"):
        parse_config({"quality": {"min_sharpness": "high"}})
    with pytest.raises(ConfigError, match="not one of"):
        parse_config({"identity": {"algorithm": "kmeans"}})
    with pytest.raises(ConfigError):
        parse_config({"splits": {"test_fraction": 1.5}})
    y = tmp_path / "b.yaml"
    y.write_text("seed: 3\nquality:\n  min_sharpness: null\nfaces:\n  size: 256\n")
    cfg = load_config(y, ["identity.min_images=5", "crawl.content_types=[image/png]"])
    assert cfg.seed == 3 and cfg.quality.min_sharpness is None and cfg.faces.size == 256
    assert cfg.identity.min_images == 5 and cfg.crawl.content_types == ("image/png",)
    assert parse_config(cfg.to_dict()) == cfg  # round trip
