"""bfrcore.weights.derived: files derived once per machine from registered weights are checked on every load,
re-derived when damaged, derived in memory when the cache cannot be written; dlib's frontal face detector loaded
from its saved copy detects exactly what ``get_frontal_face_detector()`` detects, on real photos."""

from __future__ import annotations

import pytest

from bfrcore.weights.derived import derived_path, load_or_derive


def test_derived_file_is_stored_checked_and_remade(tmp_path, monkeypatch):
    monkeypatch.setenv("CELEBREF_WEIGHTS_DIR", str(tmp_path))
    calls = []

    def make():
        calls.append(1)
        return b"derived bytes"

    assert load_or_derive("x.bin", make) == (b"derived bytes", tmp_path / "derived" / "x.bin")
    assert load_or_derive("x.bin", make)[0] == b"derived bytes" and len(calls) == 1  # read back, not remade
    (tmp_path / "derived" / "x.bin").write_bytes(b"damaged bytes")
    assert load_or_derive("x.bin", make)[0] == b"derived bytes" and len(calls) == 2
    assert (tmp_path / "derived" / "x.bin").read_bytes() == b"derived bytes"
    for bad in ("", "../x", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="bad derived file name"):
            derived_path(bad)


def test_unwritable_cache_derives_in_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "file_not_folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("CELEBREF_WEIGHTS_DIR", str(blocker))
    assert load_or_derive("x.bin", lambda: b"abc") == (b"abc", None)


@pytest.mark.shared_data
def test_saved_frontal_detector_detects_identically(shared_faces, tmp_path, monkeypatch):
    import dlib

    from bfrcore.faces import dlib_models
    from bfrcore.imageio import read_image
    from tests.celebref.build_support import shared_rows

    monkeypatch.setenv("CELEBREF_WEIGHTS_DIR", str(tmp_path))
    dlib_models.hog_detector.cache_clear()
    try:
        first = dlib_models.hog_detector()  # derived: saved into tmp_path
        dlib_models.hog_detector.cache_clear()
        loaded = dlib_models.hog_detector()  # loaded from the saved copy
    finally:
        dlib_models.hog_detector.cache_clear()
    assert (tmp_path / "derived" / f"dlib-frontal-face-detector.dlib-{dlib.__version__}.svm").is_file()
    builtin = dlib.get_frontal_face_detector()
    rows = sorted(shared_rows(shared_faces, kinds={"celeba_in_the_wild", "lfw_250", "whole_photo", "group_photo"}),
                  key=lambda r: r["sha256"])[:12]
    n_faces = 0
    for r in rows:
        img = read_image(shared_faces / r["source"] / r["path"])
        for up in (0, 1):
            runs = [det.run(img, up, 0.0) for det in (builtin, first, loaded)]
            boxes = [[(b.left(), b.top(), b.right(), b.bottom()) for b in run[0]] for run in runs]
            assert boxes[0] == boxes[1] == boxes[2]
            assert list(runs[0][1]) == list(runs[1][1]) == list(runs[2][1])  # scores, bit for bit
            assert list(runs[0][2]) == list(runs[2][2])  # which of the 5 filters fired
            n_faces += len(boxes[0])
    assert n_faces >= 12
