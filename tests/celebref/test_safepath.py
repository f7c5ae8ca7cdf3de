"""Path safety for archive members, manifest paths and ids."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from bfrcore.safepath import UnsafePathError, check_relative, safe_component, safe_extract, safe_join


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", "C:\\win", "", "a\x00b", "..", "./.."])
def test_escapes_refused(bad, tmp_path):
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, bad)


def test_normal_paths(tmp_path):
    assert check_relative("a/./b\\c").as_posix() == "a/b/c"
    assert safe_join(tmp_path, "images/00001/3.png") == tmp_path.resolve() / "images" / "00001" / "3.png"


def test_symlink_escape_refused(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path / "root", "link/outside.txt")


@pytest.mark.parametrize("name", ["00075", "Barack_Obama", "a.b-c"])
def test_components_ok(name):
    assert safe_component(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x y", "ü", "a\\b"])
def test_components_bad(name):
    with pytest.raises(UnsafePathError):
        safe_component(name)


def test_tar_with_link_or_escape_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("ok/a.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"a"))
        link = tarfile.TarInfo("ok/link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    arch = tmp_path / "a.tar"
    arch.write_bytes(buf.getvalue())
    with pytest.raises(UnsafePathError):
        safe_extract(arch, tmp_path / "out")
    assert not (tmp_path / "out" / "ok" / "a.txt").exists()  # nothing written before the check


def test_zip_extract_ok_and_size_limit(tmp_path):
    arch = tmp_path / "a.zip"
    with zipfile.ZipFile(arch, "w") as zf:
        zf.writestr("d/a.txt", "hello")
    files = safe_extract(arch, tmp_path / "out")
    assert [f.read_text() for f in files] == ["hello"]
    with pytest.raises(UnsafePathError, match="limit"):
        safe_extract(arch, tmp_path / "out2", max_total_bytes=2)


def test_member_problems_skipped_and_recorded(tmp_path):
    """extract_members skips a too-large member (never written) and a file/folder name clash, keeps the rest;
    safe_extract (all or nothing, for weights) names the first bad member instead of a traceback."""
    from bfrcore.safepath import ArchiveError, extract_members

    arch = tmp_path / "m.zip"
    with zipfile.ZipFile(arch, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("d/big.bin", b"\0" * 100_000)
        zf.writestr("d/x", b"file")
        zf.writestr("d/x/y.txt", b"in a folder named like the file")
        zf.writestr("d/ok.txt", b"fine")
    res = extract_members(arch, tmp_path / "out", max_member_bytes=10_000)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in res.written) == ["d/ok.txt", "d/x/y.txt"]
    assert [(r.name, r.reason) for r in res.rejected] == [("d/big.bin", "too_large"), ("d/x", "name_conflict")]
    assert not (tmp_path / "out" / "d" / "big.bin").exists()
    with pytest.raises(ArchiveError, match="d/big.bin"):
        safe_extract(arch, tmp_path / "out2", max_member_bytes=10_000)
    # a './' folder entry (what `tar -C dir .` writes) is not an escape
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.addfile(_dir_info("./"))
        info = tarfile.TarInfo("./a/b.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    t = tmp_path / "dot.tar"
    t.write_bytes(buf.getvalue())
    assert [p.read_text() for p in safe_extract(t, tmp_path / "out3")] == ["hi"]


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info
