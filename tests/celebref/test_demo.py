"""`make demo`'s embedded default: real photos from installed packages (+ the hash-checked face_recognition sdist)."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from bfrcli import demo
from bfrcore.imageio import read_image


@pytest.fixture
def no_sdist(tmp_path, monkeypatch):
    """An empty demo cache and no network: only the package photos are available."""
    monkeypatch.setattr(demo, "_cache_dir", lambda: tmp_path / "cache")

    def offline(*a, **k):
        raise OSError("offline")

    monkeypatch.setattr(demo, "fetch_sample_photos", offline)
    return tmp_path


def test_package_photos_are_real_faces(no_sdist):
    from bfrcore.faces import detect

    src, notes = demo.prepare_embedded_source(no_sdist / "src")
    names = sorted(p.name for p in src.iterdir())
    assert names == sorted(n for _, _, n in demo.PACKAGE_PHOTOS)
    assert any("unavailable" in n for n in notes)  # says what is missing, never fails
    n_faces = 0
    for p in src.iterdir():
        img = read_image(p)
        assert img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 100
        assert img.std() > 20  # photographs, not flat or synthetic fills
        n_faces += len(detect.detect_faces(img))
    assert n_faces >= 5  # t1.jpg is a group photo


def test_sdist_photos_are_extracted_safely(tmp_path, monkeypatch):
    """The archive members are written below the destination under the names of SDIST_PHOTOS, nothing else."""
    cache = tmp_path / "cache"
    cache.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for member in [*demo.SDIST_PHOTOS, "face_recognition-1.3.0/setup.py"]:
            data = member.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    (cache / demo.FACE_RECOGNITION_SDIST[0].rsplit("/", 1)[1]).write_bytes(buf.getvalue())
    monkeypatch.setattr(demo, "_cache_dir", lambda: cache)
    src, _ = demo.prepare_embedded_source(tmp_path / "src")
    for member, rel in demo.SDIST_PHOTOS.items():
        assert (src / rel).read_bytes() == member.encode()
    assert not (src / "setup.py").exists()
    assert len(list((src / "obama").iterdir())) == 5  # one person, five photos: the reference-based models' data


def test_cached_sdist_matches_the_pinned_hash():
    archive = demo._cache_dir() / demo.FACE_RECOGNITION_SDIST[0].rsplit("/", 1)[1]
    if not archive.is_file():
        pytest.skip(f"{archive} not fetched (`make demo-data` fetches it from PyPI)")
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == demo.FACE_RECOGNITION_SDIST[1]


def test_fetch_only_never_fails_offline(no_sdist, capsys):
    assert demo.main(["--fetch-only"]) == 0
    assert "package photos only" in capsys.readouterr().out


def test_missing_source_is_a_usage_error(tmp_path, capsys):
    assert demo.main(["--source", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_split_mode_follows_the_photos(tmp_path):
    """Several photos of one person: hold out some of them (image split); one photo per person: other people."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.jpg").write_bytes(b"x")
    (tmp_path / "b.png").write_bytes(b"x")
    assert demo._split_mode(tmp_path) == "identity"
    (tmp_path / "a" / "2.JPG").write_bytes(b"x")
    assert demo._split_mode(tmp_path) == "image"


def test_demo_ends_with_publish_and_load_back_check(small_built, tmp_path, capsys, monkeypatch):
    """The demo's last steps on a real `celebref build` output and a real `bench degrade` test set: the dry-run
    publish and the load-back comparison pass; a published folder that differs from the dataset fails the step."""
    import json

    from bfrcli.bench import main as bench_main
    from celebref.publish import verify

    t = tmp_path / "testsets" / "celebref-x4"
    assert bench_main(["degrade", "-q", "--dataset", str(small_built.out), "--preset", "celebref-x4", "--seed", "0",
                       "--out", str(t), "--limit", "2"]) == 0
    report = demo.DemoReport(tmp_path)
    assert demo.publish_and_verify(report, small_built.out, [t], tmp_path / "publish")
    assert [(s["step"], s["rc"]) for s in report.steps] == [("publish (dry run)", 0), ("load-back check", 0)]
    assert "2 LQ image hashes equal" in report.steps[-1]["checked"]

    # a folder that no longer matches (build.json edited after publishing): the step fails loudly
    real = verify.verify_published_folder

    def tampered(folder, dataset, testsets, **kw):
        info = json.loads((folder / "build.json").read_text())
        (folder / "build.json").write_text(json.dumps({**info, "dataset_hash": "0" * 64}))
        return real(folder, dataset, testsets, **kw)

    monkeypatch.setattr(verify, "verify_published_folder", tampered)
    report = demo.DemoReport(tmp_path)
    assert not demo.publish_and_verify(report, small_built.out, [t], tmp_path / "publish")
    assert [(s["step"], s["rc"]) for s in report.steps] == [("publish (dry run)", 0), ("load-back check", 1)]
    assert "build.json dataset_hash" in capsys.readouterr().err
