"""Fault injection at ingest: bad archives and special files are built in tmp_path by each test.

Archive members that are too large (declared, or while streaming), corrupt (bad CRC, truncated .tar.gz), or in
conflict with another member are skipped and recorded per member while the others are ingested; an archive with no
readable member list is one clear rc-2 error. FIFOs, devices, sockets and dangling symlinks in a folder are recorded
(`not_a_regular_file` / `broken_link`) and never opened - checked through the real `celebref build`."""

from __future__ import annotations

import builtins
import dataclasses
import io
import os
import random
import signal
import socket
import struct
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from bfrcli.celebref import main as celebref_main
from bfrcore import safepath
from bfrcore.imageio import encode_png, file_sha256
from celebref.ingest import SourceError, ingest_sources, parse_source
from celebref.pipeline.config import BuildConfig
from tests.helpers import tiny_image

MiB = 1 << 20


def _png(seed: int) -> bytes:
    return encode_png(tiny_image(40, 56, seed=seed))


def _cfg(max_bytes: int = 50 * MiB) -> BuildConfig:
    cfg = BuildConfig()
    return cfg.replace(ingest=dataclasses.replace(cfg.ingest, max_bytes=max_bytes))


def _rows(res) -> dict[str, str]:
    """source_path -> reject reason ('ok' for items)."""
    out = {r["source_path"]: r["reject_reason"] for r in res.rejects}
    out.update({i["source_path"]: "ok" for i in res.items})
    return out


@pytest.fixture
def write_counter(monkeypatch):
    """Counts every byte the extraction writes, per file (the module's ``open`` is wrapped)."""
    written: Counter = Counter()
    real_open = builtins.open

    class Counted:
        def __init__(self, f, key):
            self._f, self._key = f, key

        def write(self, b):
            written[self._key] += len(b)
            return self._f.write(b)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

        def __getattr__(self, name):
            return getattr(self._f, name)

    def counting_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return Counted(f, Path(path).name) if "w" in mode else f

    monkeypatch.setattr(safepath, "open", counting_open, raising=False)
    return written


# ------------------------------------------------------------------------------------------ 1. size limits
def test_zip_and_targz_bomb_members_not_written(tmp_path, write_counter):
    """64 MiB of zeros (a ~64 KB member) with max_bytes = 1 MiB: rejected from its declared size, nothing of it
    written; the other members are ingested."""
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("p/a.png", _png(1))
        zf.writestr("p/bomb.jpg", b"\0" * (64 * MiB))
        zf.writestr("p/b.png", _png(2))
    t = tmp_path / "bomb.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        for name, data in (("q/a.png", _png(3)), ("q/bomb.jpg", b"\0" * (64 * MiB)), ("q/b.png", _png(4))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    assert z.stat().st_size < 1 * MiB and t.stat().st_size < 1 * MiB
    for arc, d in ((z, "p"), (t, "q")):
        res = ingest_sources([parse_source(str(arc))], tmp_path / "cache", _cfg(1 * MiB))
        rows = _rows(res)
        assert rows == {f"{arc}!{d}/a.png": "ok", f"{arc}!{d}/b.png": "ok", f"{arc}!{d}/bomb.jpg": "too_large"}
        rej = next(r for r in res.rejects if r["reject_reason"] == "too_large")
        assert "67108864 bytes" in rej["reject_detail"] and "ingest.max_bytes" in rej["reject_detail"]
        assert rej["name"] == d
    assert write_counter["bomb.jpg"] == 0
    assert max(write_counter.values()) <= 1 * MiB
    tree_bytes = sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert tree_bytes < 1 * MiB


def _lie_about_size(data: bytes, name: bytes, size: int) -> bytes:
    """Set the uncompressed size of member ``name`` in its local header and central directory entry."""
    buf = bytearray(data)
    lh = buf.index(b"PK\x03\x04")  # first local header is the member's (single-member zip)
    assert buf[lh + 30:lh + 30 + len(name)] == name
    struct.pack_into("<I", buf, lh + 22, size)
    cd = buf.index(b"PK\x01\x02")
    assert buf[cd + 46:cd + 46 + len(name)] == name
    struct.pack_into("<I", buf, cd + 24, size)
    return bytes(buf)


def test_zip_header_lying_about_size_is_stopped(tmp_path, write_counter):
    """A member whose headers declare 4 KiB but which inflates to 64 MiB: extraction stops at the declared size,
    the partial file is deleted, the member is recorded; the other archive's members are unaffected."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("liar.jpg", b"\0" * (64 * MiB))
    z = tmp_path / "liar.zip"
    z.write_bytes(_lie_about_size(buf.getvalue(), b"liar.jpg", 4096))
    assert zipfile.ZipFile(z).getinfo("liar.jpg").file_size == 4096
    res = ingest_sources([parse_source(str(z))], tmp_path / "cache", _cfg(1 * MiB))
    assert _rows(res) == {f"{z}!liar.jpg": "corrupt_archive_member"}
    assert write_counter["liar.jpg"] <= 4096
    assert not list((tmp_path / "cache").rglob("liar.jpg"))


def test_copy_capped_stops_an_endless_member(tmp_path):
    """The streaming cap itself: a source that never ends (like /dev/zero) is cut at the limit and deleted."""

    class Endless(io.RawIOBase):
        reads = 0

        def readable(self):
            return True

        def readinto(self, b):
            Endless.reads += len(b)
            b[:] = b"\0" * len(b)
            return len(b)

    dst = tmp_path / "m.jpg"
    with pytest.raises(safepath._MemberFailure) as e:
        safepath.copy_capped(lambda: io.BufferedReader(Endless()), dst, 1 * MiB, max_member_bytes=1 * MiB,
                             chunk=64 << 10)
    assert e.value.reason == "too_large"
    assert not dst.exists()
    assert Endless.reads <= 2 * MiB  # read at most one buffered block past the limit
    with pytest.raises(safepath._MemberFailure) as e:  # more data than declared, below the size limit
        safepath.copy_capped(lambda: io.BytesIO(b"x" * 5000), dst, 100, declared=100, max_member_bytes=MiB)
    assert e.value.reason == "corrupt_archive_member" and "declared 100" in e.value.detail
    assert not dst.exists()


# ------------------------------------------------------------------------------------------ 2. corrupt members
def test_bad_crc_member_recorded_others_ingested(tmp_path):
    payload = _png(5)
    z = tmp_path / "crc.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("x/good.png", _png(6))
        zf.writestr("x/bad.png", payload)
        zf.writestr("x/good2.png", _png(7))
    data = bytearray(z.read_bytes())
    at = data.index(payload) + len(payload) // 2
    data[at] ^= 0xFF
    z.write_bytes(bytes(data))
    res = ingest_sources([parse_source(str(z))], tmp_path / "cache", _cfg())
    assert _rows(res) == {f"{z}!x/good.png": "ok", f"{z}!x/good2.png": "ok", f"{z}!x/bad.png": "corrupt_archive_member"}
    bad = next(r for r in res.rejects if r["source_path"].endswith("bad.png"))
    assert "CRC" in bad["reject_detail"]
    assert not list((tmp_path / "cache").rglob("bad.png"))
    # the recorded skips survive the cached extraction
    again = ingest_sources([parse_source(str(z))], tmp_path / "cache", _cfg())
    assert _rows(again) == _rows(res)


@pytest.mark.parametrize("file_first", [True, False])
def test_name_used_as_file_and_folder(tmp_path, file_first):
    z = tmp_path / "clash.zip"
    members = [("a.jpg", _png(8)), ("a.jpg/b.jpg", _png(9)), ("c.png", _png(10))]
    if not file_first:
        members = members[1:2] + members[:1] + members[2:]
    with zipfile.ZipFile(z, "w") as zf:
        for n, d in members:
            zf.writestr(n, d)
    res = ingest_sources([parse_source(str(z))], tmp_path / "cache", _cfg())
    assert _rows(res) == {f"{z}!a.jpg": "name_conflict", f"{z}!a.jpg/b.jpg": "ok", f"{z}!c.png": "ok"}
    assert "also a folder" in res.rejects[0]["reject_detail"]


def test_member_name_too_long(tmp_path):
    z = tmp_path / "long.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("d/" + "n" * 300 + ".jpg", _png(11))
        zf.writestr("d/ok.png", _png(12))
    res = ingest_sources([parse_source(str(z))], tmp_path / "cache", _cfg())
    assert sorted(_rows(res).values()) == ["bad_member_name", "ok"]


def _targz(path: Path, n: int = 3) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for i in range(n):
            data = random.Random(i).randbytes(100_000)  # incompressible: each member's gz offset is predictable
            info = tarfile.TarInfo(f"p/{i}.jpg")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_truncated_targz_recorded_per_member(tmp_path):
    full = tmp_path / "full.tar.gz"
    _targz(full)
    t = tmp_path / "cut.tar.gz"
    t.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.8)])  # inside the third member
    res = ingest_sources([parse_source(str(t))], tmp_path / "cache", _cfg())
    rows = _rows(res)
    assert rows[f"{t}!p/0.jpg"] == "ok" and rows[f"{t}!p/1.jpg"] == "ok"
    assert rows[f"{t}!p/2.jpg"] == "corrupt_archive_member"
    tail = [r for r in res.rejects if r["reject_reason"] == "truncated_archive"]
    assert len(tail) == 1 and "EOFError" in tail[0]["reject_detail"]
    assert len(rows) == 4


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_unusable_archive_is_one_clear_rc2_line(tmp_path, capsys, kind):
    src = tmp_path / f"full.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(src, "w") as zf:
            zf.writestr("a.png", _png(13))
    else:
        _targz(src)
    cut = tmp_path / f"cut.{kind}"
    cut.write_bytes(src.read_bytes()[:10])
    with pytest.raises(SourceError):
        ingest_sources([parse_source(str(cut))], tmp_path / "cache", _cfg())
    rc = celebref_main(["build", "--source", str(cut), "--out", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and str(cut) in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------ 3. special files
@pytest.fixture
def hang_guard():
    """Fail (instead of hanging forever) if something opens the FIFO: not a speed assertion, a deadlock guard."""
    def boom(*_):
        raise TimeoutError("ingest blocked: a special file was opened")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(300)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _special_files(folder: Path) -> dict[str, str]:
    """A FIFO, a symlink to /dev/zero, a dangling symlink and (when the path fits) a socket, image-named."""
    want = {}
    os.mkfifo(folder / "p.png")
    want["p.png"] = "not_a_regular_file"
    (folder / "x.jpg").symlink_to("/dev/zero")
    want["x.jpg"] = "not_a_regular_file"
    (folder / "d.jpg").symlink_to(folder / "missing.jpg")
    want["d.jpg"] = "broken_link"
    sock_path = folder / "s.jpg"
    if len(str(sock_path)) < 100:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(sock_path))
        s.close()
        want["s.jpg"] = "not_a_regular_file"
    return want


def test_special_files_recorded_not_opened_in_real_build(shared_faces, tmp_path, capsys, hang_guard):
    from tests.celebref.build_support import link_tree, shared_rows

    rows = shared_rows(shared_faces, sources={"lfw_krasserm"})
    person = min(r["identity"] for r in rows)
    folder = link_tree([r for r in rows if r["identity"] == person], shared_faces, tmp_path / "src", by="identity",
                       per_group=3, prefix_source=False)
    special = _special_files(folder / person)
    out = tmp_path / "ds"
    cfg = tmp_path / "build.yaml"  # no quality/dedup filtering: the 3 photos become one identity
    cfg.write_text("identity: {min_images: 1}\noutput: {report: false}\ndedup: {enabled: false}\n"
                   "splits: {mode: image}\n"  # one identity: a held-out image with references
                   "quality: {niqe: false, min_eye_distance: null, min_sharpness: null, max_noise_ratio: null,\n"
                   "          max_tone_r2: null, min_chroma: null, max_blockiness: null}\n")
    rc = celebref_main(["build", "--source", f"folder:{folder}", "--out", str(out), "--workers", "1",
                        "--config", str(cfg), "-q"])
    cap = capsys.readouterr()
    text = cap.out
    assert rc == 0, cap.err[-2000:]
    man = pd.read_parquet(out / "manifest.parquet")
    by_file = {Path(p).name: (st, r, d) for p, st, r, d in
               zip(man["source_path"], man["reject_stage"], man["reject_reason"], man["reject_detail"])}
    for name, reason in special.items():
        st, r, _ = by_file[name]
        assert (st, r) == ("ingest", reason), name
    assert "named pipe" in by_file["p.png"][2] and "character device" in by_file["x.jpg"][2]
    assert "/dev/zero" in by_file["x.jpg"][2]
    photos = man[man["source_path"].map(lambda p: Path(p).name not in special)]
    assert photos["source_path"].nunique() == 3 and (photos["reject_stage"] != "ingest").all()
    assert "ingest/not_a_regular_file" in text and "ingest/broken_link" in text


def test_unreadable_and_swapped_files_recorded(tmp_path, monkeypatch, hang_guard):
    """A file that cannot be opened (permission), and one replaced by a FIFO after the walk classified it."""
    from celebref.ingest import folder as folder_mod

    root = tmp_path / "src" / "who"
    root.mkdir(parents=True)
    for i in range(3):
        (root / f"{i}.png").write_bytes(_png(20 + i))
    real_open = os.open

    def guarded_open(path, flags, *a, **k):
        if Path(path).name == "0.png":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *a, **k)

    real_scan = folder_mod.scan_image_entries

    def scan_then_swap(root_, exts):
        entries, ignored = real_scan(root_, exts)
        victim = root / "2.png"
        victim.unlink()
        os.mkfifo(victim)  # a regular file at scan time, a pipe when it is opened
        return entries, ignored

    monkeypatch.setattr(folder_mod.os, "open", guarded_open)
    monkeypatch.setattr(folder_mod, "scan_image_entries", scan_then_swap)
    res = ingest_sources([parse_source(f"folder:{tmp_path / 'src'}")], tmp_path / "cache", _cfg())
    rows = {Path(k).name: v for k, v in _rows(res).items()}
    assert rows == {"0.png": "unreadable", "1.png": "ok", "2.png": "not_a_regular_file"}
    assert res.items[0]["item_id"] == file_sha256(root / "1.png")


def test_special_source_archive_refused(tmp_path):
    with pytest.raises(SourceError, match="not a regular file"):
        ingest_sources([parse_source("archive:/dev/zero")], tmp_path / "cache", _cfg())
    fifo = tmp_path / "a.zip"
    os.mkfifo(fifo)
    with pytest.raises(SourceError):
        ingest_sources([parse_source(f"archive:{fifo}")], tmp_path / "cache", _cfg())
