"""The weights registry: lookup order, verification, import, fetch (against a loopback server), errors."""

from __future__ import annotations

import bz2
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from bfrcore import weights
from bfrcore.safepath import UnsafePathError
from bfrcore.weights import registry as reg


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextmanager
def temp_entry(**kw):
    entry = reg.WeightsEntry(**{"description": "test", "license": "test", "used_by": ("tests",), **kw})
    reg.register(entry)
    try:
        yield entry
    finally:
        reg._REGISTRY.pop(entry.name, None)


@contextmanager
def serve(files: dict[str, bytes]):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = files.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()


def test_every_entry_is_documented():
    entries = weights.list_entries()
    assert len(entries) >= 20
    names = {e.name for e in entries}
    for required in ("insightface-buffalo_l", "lpips-alex-v0.1", "lpips-vgg-v0.1", "torchvision-alexnet",
                     "torchvision-vgg16", "pytorch-fid-inception", "ffhq512-fid-stats-clean", "arcface-resnet18",
                     "dmdnet-official", "dfdnet-official", "dfdnet-dictionary512", "asffnet512-official",
                     "dlib-shape-predictor-68", "dlib-shape-predictor-5", "dlib-resnet-face-v1", "mtcnn-pnet"):
        assert required in names
    for e in entries:
        assert e.license and e.description and e.used_by, e.name
        assert e.url or e.package_file or e.pypi_archive, f"{e.name} has no source"
        if e.sha256:
            assert len(e.sha256) == 64
        if e.sha256 and e.sha256_prefix:
            assert e.sha256.startswith(e.sha256_prefix), e.name


def test_offline_files_ship_in_packages_and_verify(isolated_weights):
    for name in ("dlib-shape-predictor-68", "dlib-shape-predictor-5", "dlib-resnet-face-v1",
                 "dlib-mmod-detector", "lpips-alex-v0.1", "lpips-vgg-v0.1", "mtcnn-onet"):
        st = weights.status(name)
        assert st.path is not None and st.where == "package", (name, st.detail)


def test_missing_file_error_names_file_and_fix(isolated_weights):
    with pytest.raises(weights.MissingWeightsError) as e:
        weights.require("pytorch-fid-inception")
    msg = str(e.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in msg
    assert "bench weights fetch pytorch-fid-inception" in msg
    assert "bench weights import pytorch-fid-inception" in msg
    assert str(isolated_weights) in msg
    # a Google-Drive-only file: no fetch command, but the page to download from
    with pytest.raises(weights.MissingWeightsError) as e:
        weights.require("dfdnet-official")
    assert "download it by hand" in str(e.value) and "bench weights import dfdnet-official" in str(e.value)


def test_upstream_location_is_found(isolated_weights, tmp_path):
    data = b"upstream copy"
    with temp_entry(name="t-upstream", filename="u.bin", sha256=_sha(data),
                    upstream_paths=("{torch_home}/hub/checkpoints/u.bin",)) as e:
        p = tmp_path / "torch" / "hub" / "checkpoints" / "u.bin"
        p.parent.mkdir(parents=True)
        p.write_bytes(data)
        st = weights.status(e.name)
        assert st.where == "upstream" and st.path == p


def test_import_verifies_hash_and_installs(isolated_weights, tmp_path):
    good = b"the real weights"
    with temp_entry(name="t-import", filename="w.pth", sha256=_sha(good)) as e:
        bad = tmp_path / "bad.pth"
        bad.write_bytes(b"something else")
        with pytest.raises(weights.WeightsVerificationError, match="sha256"):
            weights.import_file(e.name, bad)
        assert weights.locate(e.name) is None
        src = tmp_path / "w.pth"
        src.write_bytes(good)
        dest = weights.import_file(e.name, src)
        assert dest == isolated_weights / "w.pth" and dest.read_bytes() == good
        assert weights.require(e.name) == dest
        assert weights.describe(e.name)["sha256"] == _sha(good)
        # corrupting the cached copy makes it missing again, with the reason
        dest.write_bytes(b"tampered")
        with pytest.raises(weights.MissingWeightsError, match="rejected"):
            weights.require(e.name)


def test_size_and_prefix_checks(isolated_weights, tmp_path):
    data = b"0123456789"
    with temp_entry(name="t-prefix", filename="p.pth", sha256_prefix=_sha(data)[:8], size=10) as e:
        f = tmp_path / "p.pth"
        f.write_bytes(b"x" * 10)
        with pytest.raises(weights.WeightsVerificationError, match="starting"):
            weights.import_file(e.name, f)
        f.write_bytes(b"short")
        with pytest.raises(weights.WeightsVerificationError, match="bytes"):
            weights.import_file(e.name, f)
        f.write_bytes(data)
        assert weights.import_file(e.name, f).read_bytes() == data


def test_fetch_from_server_verifies(isolated_weights):
    good = b"served weights" * 100
    with serve({"/w.bin": good, "/bad.bin": b"nope", "/w.bin.bz2": bz2.compress(good)}) as base:
        with temp_entry(name="t-fetch", filename="w.bin", url=base + "/w.bin", sha256=_sha(good)) as e:
            p = weights.fetch(e.name, progress=False)
            assert p.read_bytes() == good
            assert weights.fetch(e.name, progress=False) == p  # present: no download
        with temp_entry(name="t-fetch-bad", filename="x.bin", url=base + "/bad.bin", sha256=_sha(good)) as e:
            with pytest.raises(weights.WeightsVerificationError):
                weights.fetch(e.name, progress=False)
            assert weights.locate(e.name) is None
        with temp_entry(name="t-fetch-404", filename="y.bin", url=base + "/missing", sha256=_sha(good)) as e:
            with pytest.raises(weights.WeightsDownloadError, match="404"):
                weights.fetch(e.name, progress=False, retries=0)
        with temp_entry(name="t-fetch-bz2", filename="z.bin", url=base + "/w.bin.bz2", compression="bz2",
                        sha256=_sha(good)) as e:
            assert weights.fetch(e.name, progress=False).read_bytes() == good


def test_fetch_offline_fails_fast_with_import_hint(isolated_weights):
    import time

    with temp_entry(name="t-offline", filename="o.bin", url="http://no-such-host.invalid/o.bin") as e:
        t0 = time.time()
        with pytest.raises(weights.WeightsDownloadError) as err:
            weights.fetch(e.name, progress=False)
        assert time.time() - t0 < 10
        assert "bench weights import t-offline" in str(err.value)


def test_fetch_from_pypi_archive(isolated_weights):
    member = b"npz-ish parameters"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("pkg-1.0/pkg/params.npz")
        info.size = len(member)
        tf.addfile(info, io.BytesIO(member))
    archive = buf.getvalue()
    with serve({"/pkg-1.0.tar.gz": archive}) as base:
        src = reg.PypiArchiveSource(base + "/pkg-1.0.tar.gz", _sha(archive), "pkg-1.0/pkg/params.npz")
        with temp_entry(name="t-pypi", filename="params.npz", pypi_archive=src, sha256=_sha(member)) as e:
            assert weights.fetch(e.name, progress=False).read_bytes() == member
        src_bad = reg.PypiArchiveSource(base + "/pkg-1.0.tar.gz", "0" * 64, "pkg-1.0/pkg/params.npz")
        with temp_entry(name="t-pypi-bad", filename="p2.npz", pypi_archive=src_bad) as e:
            with pytest.raises(weights.WeightsVerificationError, match="PyPI"):
                weights.fetch(e.name, progress=False)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    return buf.getvalue()


def test_model_pack_zip_import(isolated_weights, tmp_path):
    det, rec = b"detector onnx", b"recognizer onnx"
    with temp_entry(name="t-pack", filename="pack.zip", kind="zip-dir",
                    members=(("det.onnx", _sha(det)), ("rec.onnx", None))) as e:
        z = tmp_path / "pack.zip"
        z.write_bytes(_zip({"pack/det.onnx": det, "pack/rec.onnx": rec}))  # one top folder
        folder = weights.import_file(e.name, z)
        assert folder == isolated_weights / "pack" and (folder / "det.onnx").read_bytes() == det
        assert weights.status(e.name).where == "cache"
        z.write_bytes(_zip({"det.onnx": b"wrong", "rec.onnx": rec}))
        with pytest.raises(weights.WeightsVerificationError):
            weights.import_file(e.name, z)
        z.write_bytes(_zip({"../../evil.onnx": det}))
        with pytest.raises(UnsafePathError):
            weights.import_file(e.name, z)
        assert not (tmp_path.parent / "evil.onnx").exists()


def test_unknown_name():
    with pytest.raises(weights.UnknownWeightsError, match="known:"):
        weights.get_entry("no-such-weights")


def test_niqe_params_fetchable_from_pypi_entry_is_pinned():
    e = weights.get_entry("niqe-basicsr")
    assert e.pypi_archive is not None and e.pypi_archive.url.startswith("https://files.pythonhosted.org/")
    assert len(e.pypi_archive.archive_sha256) == 64 and e.fetchable


# ------------------------------------------------------------------- content checks for entries without a hash
NO_HASH = ("arcface-resnet18", "asffnet512-official", "dfdnet-dictionary512", "dfdnet-official", "dmdnet-official",
           "facexlib-awing-wflw", "ffhq512-fid-stats-clean", "maniqa-koniq", "niqe-pyiqa")


def _bench(argv):
    from bfrcli.bench import main

    return main(argv)


def _nothing_installed(name: str, cache: Path) -> None:
    assert weights.locate(name) is None
    assert not cache.exists() or not [p for p in cache.iterdir() if not p.name.startswith(".verified")]


def test_every_entry_without_a_hash_checks_its_content():
    import baselines.weights_checks  # noqa: F401  (registers the checks, as `bench weights` does)
    import evaluation.weights_checks  # noqa: F401
    from bfrcore.weights.content import content_checks

    CHECKS = content_checks()

    no_hash = sorted(e.name for e in weights.list_entries() if not (e.sha256 or e.sha256_prefix or e.size))
    assert tuple(no_hash) == NO_HASH
    for name in no_hash:
        e = weights.get_entry(name)
        assert e.content in CHECKS and e.verification.startswith("content: "), name


@pytest.mark.parametrize("name", NO_HASH)
def test_import_refuses_random_bytes(name, isolated_weights, tmp_path, capsys):
    import numpy as np

    f = tmp_path / weights.get_entry(name).filename
    f.write_bytes(np.random.default_rng(0).bytes(1 << 20))
    assert _bench(["weights", "import", name, str(f)]) == 2
    err = capsys.readouterr().err
    assert name in err and "nothing was installed" in err
    _nothing_installed(name, isolated_weights)
    assert _bench(["weights", "status", name]) == 0
    assert "MISSING" in capsys.readouterr().out


def test_import_refuses_a_state_dict_of_another_model(isolated_weights, tmp_path, capsys):
    import torch

    from bfrcore.faces.arcface18 import ResNetArcFace18

    torch.manual_seed(0)
    state = ResNetArcFace18().state_dict()
    state.pop("fc5.weight")  # missing
    state["bn1.weight"] = torch.ones(7)  # wrong shape
    state["head.extra"] = torch.zeros(3)  # unexpected
    f = tmp_path / "arcface_resnet18.pth"
    torch.save(state, f)
    assert _bench(["weights", "import", "arcface-resnet18", str(f)]) == 2
    err = capsys.readouterr().err
    assert "1 missing keys: fc5.weight" in err and "1 unexpected keys: head.extra" in err
    assert "bn1.weight 7 (expected 64)" in err
    _nothing_installed("arcface-resnet18", isolated_weights)
    # a DMDNet-shaped file is refused for DMDNet too when it is the tiny model (not the official paper layout)
    from baselines import create_model

    tiny = create_model("dmdnet", "tiny")
    f = tmp_path / "DMDNet.pth"
    torch.save(tiny.state_dict(), f)
    assert _bench(["weights", "import", "dmdnet-official", str(f)]) == 2
    assert "not the DMDNet (paper) checkpoint" in capsys.readouterr().err
    _nothing_installed("dmdnet-official", isolated_weights)


def test_import_installs_a_correctly_shaped_state_dict(isolated_weights, tmp_path, capsys):
    """The real architecture with random initialisation, saved DataParallel-style as some copies are."""
    import torch

    from bfrcore.faces.arcface18 import ArcFace18Embedder, ResNetArcFace18

    torch.manual_seed(0)
    f = tmp_path / "arcface_resnet18.pth"
    torch.save({"module." + k: v for k, v in ResNetArcFace18().state_dict().items()}, f)
    assert _bench(["weights", "import", "arcface-resnet18", str(f)]) == 0
    assert "installed arcface-resnet18" in capsys.readouterr().out
    assert weights.status("arcface-resnet18").where == "cache"
    assert _bench(["weights", "status", "arcface-resnet18"]) == 0
    assert "present (cache)" in capsys.readouterr().out
    ArcFace18Embedder()  # the loader accepts what the import accepted


def test_array_entries_check_their_arrays(isolated_weights, tmp_path):
    import numpy as np
    import scipy.io

    import evaluation.weights_checks  # noqa: F401  (registers the checks, as `bench weights` does)

    npz = tmp_path / "ffhq_clean_trainval70k_512.npz"
    np.savez(npz, mu=np.zeros(2048), sigma=np.zeros((2048, 20)))
    with pytest.raises(weights.WeightsVerificationError, match=r"sigma 2048x20 \(expected 2048x2048\)"):
        weights.import_file("ffhq512-fid-stats-clean", npz)
    np.savez(npz, mean=np.zeros(2048))
    with pytest.raises(weights.WeightsVerificationError, match="missing arrays mu, sigma"):
        weights.import_file("ffhq512-fid-stats-clean", npz)
    _nothing_installed("ffhq512-fid-stats-clean", isolated_weights)
    np.savez(npz, mu=np.zeros(2048), sigma=np.eye(2048))
    assert weights.import_file("ffhq512-fid-stats-clean", npz).is_file()

    mat = tmp_path / "niqe_modelparameters.mat"
    scipy.io.savemat(mat, {"mu_prisparam": np.zeros((1, 36)), "cov_prisparam": np.zeros((36, 18))})
    with pytest.raises(weights.WeightsVerificationError, match="cov_prisparam"):
        weights.import_file("niqe-pyiqa", mat)
    scipy.io.savemat(mat, {"mu_prisparam": np.zeros((1, 36)), "cov_prisparam": np.eye(36)})
    assert weights.import_file("niqe-pyiqa", mat).is_file()


@pytest.mark.parametrize("name,tsv,wrap", [("dmdnet-paper", "dmdnet_official_state_dict.tsv", None),
                                           ("asffnet512-paper", "asffnet512_official_state_dict.tsv", "params")])
def test_official_layouts_pass_and_one_wrong_key_fails(name, tsv, wrap, tmp_path):
    """The official key lists (shape-only meta tensors: a few KB on disk), wrapped and DataParallel-prefixed as
    the loaders accept them; one renamed key is named in the refusal."""
    import torch

    import baselines.weights_checks  # noqa: F401  (registers the checks)
    from bfrcore.weights import content

    rows = [ln.split("\t") for ln in (Path(reg.__file__).parents[2] / "baselines" / "data" / tsv)
            .read_text().splitlines()[1:] if ln.strip()]
    state = {"module." + k: torch.empty(tuple(int(x) for x in s.split("x")), device="meta") for k, s, _ in rows}
    f = tmp_path / "ckpt.pth"
    torch.save({wrap: state} if wrap else state, f)
    content.check(name, f)
    first = "module." + rows[0][0]
    state["module.renamed"] = state.pop(first)
    torch.save({wrap: state} if wrap else state, f)
    with pytest.raises(content.ContentError, match=rf"missing keys: {rows[0][0]}.*unexpected keys: renamed"):
        content.check(name, f)


def test_content_checks_are_registered_by_their_owners_and_an_unregistered_one_refuses(
        isolated_weights, tmp_path, monkeypatch):
    """The kernel keeps the table; baselines/evaluation register their checks; `bench weights` imports both. An
    entry whose check nobody registered is refused (nothing installed), never installed unchecked."""
    import bfrcli.weights  # noqa: F401  (the app: imports the registering modules)
    from bfrcore.weights import content

    checks = content.content_checks()
    assert {e.content for e in weights.list_entries() if e.content} <= set(checks)
    assert {n: c.fn.__module__ for n, c in checks.items()} == {
        "arcface-resnet18": "bfrcore.weights.content", "awing-fan-4hg-98": "evaluation.weights_checks",
        "fid-stats-npz-2048": "evaluation.weights_checks", "niqe-mat-36": "evaluation.weights_checks",
        "dists-alpha-beta": "evaluation.weights_checks", "maniqa-pyiqa": "evaluation.weights_checks",
        "dmdnet-paper": "baselines.weights_checks", "asffnet512-paper": "baselines.weights_checks",
        "dfdnet-paper": "baselines.weights_checks", "dfdnet-dictionary-512": "baselines.weights_checks"}
    assert weights.get_entry("dmdnet-official").verification == (
        "content: keys+shapes of the official DMDNet state dict (1014 tensors, baselines/data TSV)")
    with pytest.raises(ValueError, match="registered twice"):
        content.register_content_check("dmdnet-paper", lambda p: None, "another")

    monkeypatch.delitem(content._CHECKS, "fid-stats-npz-2048")
    npz = tmp_path / "ffhq_clean_trainval70k_512.npz"
    import numpy as np

    np.savez(npz, mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(weights.WeightsError, match="not registered.*nothing was installed"):
        weights.import_file("ffhq512-fid-stats-clean", npz)
    _nothing_installed("ffhq512-fid-stats-clean", isolated_weights)
    assert weights.get_entry("ffhq512-fid-stats-clean").verification == "content: fid-stats-npz-2048"
