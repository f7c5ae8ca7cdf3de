"""Same numbers on any x86-64 CPU (scripts/any_cpu_check.py): the numeric core — metrics on real pairs, degraded
test sets, a small `celebref build`, every model's forward — computed in one subprocess per BLAS / SIMD kernel
setting (OpenBLAS SkylakeX vs Haswell, MKL's AMD vs Intel path, AVX-512 vs AVX2 in ATen/oneDNN/OpenCV) gives metric
values within 1e-6, identical test-set and dataset hashes and model outputs within 1e-5. The measured spreads are
in docs/evaluation.md ("Same numbers on any CPU")."""

from __future__ import annotations

import copy
import importlib.util
import platform

import pytest

from tests import helpers

pytestmark = [pytest.mark.any_cpu, pytest.mark.shared_data]

_SPEC = importlib.util.spec_from_file_location("any_cpu_check", helpers.PROJECT_ROOT / "scripts" / "any_cpu_check.py")
acc = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(acc)


@pytest.fixture(scope="module")
def reports(shared_data, mini_dataset, tmp_path_factory) -> dict[str, dict]:
    """One report per setting of acc.TEST_SETTINGS, each from its own subprocess (1 thread), run one after another.
    The MKL-Intel settings need a C compiler (for the preloaded library); without one they are skipped, said."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(f"the kernel settings emulate x86-64 CPUs; this is {platform.machine()}")
    tmp = tmp_path_factory.mktemp("any_cpu")
    fake = acc.fake_intel_mkl(tmp / "lib")
    out = {}
    for s in acc.TEST_SETTINGS:
        if acc.needs_fake_intel(s) and fake is None:
            print(f"any_cpu: {s} skipped (no C compiler)")
            continue
        out[s] = acc.run_setting(s, tmp / f"{s}.json", shared_data, mini_dataset, fake_intel=fake)
    return out


def test_same_numbers_under_every_kernel_setting(reports):
    base = reports["default"]
    # the check has power: every part ran and produced values
    cols = set(base["metrics"]["values"])
    assert {f"faces/{c}" for c in ("psnr", "ssim", "ms_ssim", "niqe", "lmd", "ids_dlib")} <= cols, cols
    assert {"calibration/niqe", "calibration/ms_ssim"} <= cols, cols
    assert not base["metrics"]["failed"]
    assert len(base["testsets"]) >= 8 and len(base["models"]) >= 7
    assert base["build"]["kept"] >= 4 and base["build"]["faces"] >= 4
    assert len(reports) >= 3, sorted(reports)
    # the settings reached the libraries (each report says which kernels its process took)
    for name, rep in reports.items():
        env, k = acc.SETTINGS[name], rep["kernels"]
        if "OPENBLAS_CORETYPE" in env and k["openblas"] is not None:
            assert all(lib.endswith(":" + env["OPENBLAS_CORETYPE"]) for lib in k["openblas"]), (name, k)
        if "ATEN_CPU_CAPABILITY" in env and base["kernels"]["torch_capability"] in ("AVX2", "AVX512"):
            assert k["torch_capability"] == env["ATEN_CPU_CAPABILITY"].upper(), (name, k)
        if acc.needs_fake_intel(name):
            assert k["mkl_intel_cpu"] == 1, (name, k)
    result = acc.compare(reports)
    print({s: {k: v for k, v in q.items() if v not in (0, 0.0, "same")} for s, q in result["spreads"].items()})
    assert result["violations"] == []


def test_compare_reports_each_kind_of_difference(reports):
    """compare() finds a metric moved by 2e-6, another test-set hash, another dataset hash and a model output moved
    by 2e-5, and nothing else."""
    base = reports["default"]
    other = copy.deepcopy(base)
    other["metrics"]["values"]["faces/psnr"][0] += 2e-6
    preset = min(other["testsets"])
    other["testsets"][preset] = "0" * 64
    other["build"]["dataset_hash"] = "0" * 64
    name = min(other["models"])
    arr = acc.decode_array(other["models"][name]).copy()
    arr.flat[0] += 2e-5
    other["models"][name] = acc.encode_array(arr)
    v = acc.compare({"default": base, "x": other})["violations"]
    assert len(v) == 4, v
    assert any("metric faces/psnr" in s for s in v) and any(f"testset_hash of {preset}" in s for s in v)
    assert any("dataset_hash" in s for s in v) and any(f"model {name}" in s for s in v)
    assert acc.compare({"default": base, "same": copy.deepcopy(base)})["violations"] == []
