"""Flags that must agree across commands: --limit is a positive integer everywhere, an unknown --metrics name is a
usage error listing the valid names, and `celebref build --device` is accepted (CPU) or refused with the reason."""

from __future__ import annotations

import pytest

from bfrcli.bench import main as bench_main
from bfrcli.celebref import main as celebref_main


@pytest.mark.parametrize("value", ["0", "-1", "two"])
@pytest.mark.parametrize("command", ["evaluate", "score", "degrade"])
def test_limit_must_be_a_positive_integer(command, value, tmp_path, capsys):
    args = {
        "evaluate": ["evaluate", "--model", "bicubic", "--testset", str(tmp_path)],
        "score": ["score", "--pred", str(tmp_path), "--testset", str(tmp_path)],
        "degrade": ["degrade", "--dataset", str(tmp_path), "--preset", "celebref-x8", "--out", str(tmp_path / "t")],
    }[command]
    assert bench_main([*args, "--limit", value]) == 2
    err = capsys.readouterr().err
    assert "--limit" in err and "expected a positive integer" in err


@pytest.mark.parametrize("command", ["evaluate", "score"])
def test_unknown_metric_is_a_usage_error_listing_valid_names(command, tmp_path, capsys):
    args = {
        "evaluate": ["evaluate", "--model", "bicubic", "--testset", str(tmp_path)],
        "score": ["score", "--pred", str(tmp_path), "--testset", str(tmp_path)],
    }[command]
    assert bench_main([*args, "--metrics", "psnr", "nosuchmetric"]) == 2
    err = capsys.readouterr().err
    assert "unknown metric(s) nosuchmetric" in err and "Traceback" not in err
    for valid in ("psnr", "ssim", "lpips_vgg", "fid", "niqe"):
        assert valid in err


def test_known_metrics_pass_the_name_check(tmp_path, capsys):
    """'all', 'default' and comma lists are valid; the run then fails on the (missing) test set, not the names."""
    assert bench_main(["evaluate", "--model", "bicubic", "--testset", str(tmp_path / "none"),
                       "--metrics", "default,all", "psnr"]) == 2
    assert "is not a test set" in capsys.readouterr().err


def test_celebref_build_device(tmp_path, capsys):
    assert celebref_main(["build", "--device", "cpu", "--print-config"]) == 0
    assert "device: cpu" in capsys.readouterr().out
    assert celebref_main(["build", "--device", "auto", "--print-config"]) == 0
    assert "device: auto" in capsys.readouterr().out
    assert celebref_main(["build", "--print-config", "--set", "runner.device=cuda:1"]) == 0
    assert celebref_main(["build", "--print-config", "--set", "runner.device=gpu"]) == 2
    assert "runner.device must be auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    assert celebref_main(["build", "--print-config", "--device", "cuda", "--set", "identity.engine=dlib"]) == 2
    assert "dlib's own network code is CPU-only" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():  # this machine and CI: refused before any work, exit 2
        assert celebref_main(["build", "--device", "cuda", "--source", str(tmp_path),
                              "--out", str(tmp_path / "o")]) == 2
        assert "torch sees no CUDA device" in capsys.readouterr().err
        assert not (tmp_path / "o").exists()
    assert celebref_main(["build", "--device", "tpu", "--print-config"]) == 2
    assert "invalid choice" in capsys.readouterr().err
