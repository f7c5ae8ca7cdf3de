"""`celebref inspect`'s library side: decode files with the suite's safe reader (:mod:`bfrcore.imageio`) and
record what was found, or why a file is not a usable image."""

from __future__ import annotations

from pathlib import Path

from bfrcore.imageio import ImageReadError, file_sha256, pixel_sha256, read_image_with_info


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file())
        else:
            out.append(p)
    return out


def inspect_files(paths: list[Path]) -> list[dict]:
    """One record per file: ok + format/mode/size/sha256s, or the reason it is unreadable."""
    records = []
    for f in _files(paths):
        rec: dict = {"path": str(f)}
        try:
            arr, info = read_image_with_info(f)
            rec.update(ok=True, format=info.format, mode=info.mode, width=info.width, height=info.height,
                       exif_transposed=info.exif_transposed, had_alpha=info.had_alpha,
                       file_sha256=file_sha256(f), pixel_sha256=pixel_sha256(arr))
        except ImageReadError as e:
            rec.update(ok=False, reason=e.reason, error=str(e))
        records.append(rec)
    return records
