"""`bench train` / `bench models`: exit codes and outputs."""

from __future__ import annotations

import json

import pytest
import yaml

from bfrcli.bench import main
from tests.baselines.test_training import TEST_MODEL, base_raw, register_test_model


def _write(tmp_path, raw) -> str:
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(raw))
    return str(p)


def test_bad_configs_exit_2(tmp_path, capsys):
    raw = base_raw(tmp_path / "data", tmp_path / "out")
    raw["loss"]["l2"] = 1.0
    assert main(["train", "--config", _write(tmp_path, raw), "-q"]) == 2
    assert "loss.l2: unknown key" in capsys.readouterr().err

    raw = base_raw(tmp_path / "data", tmp_path / "out")
    raw["optim"]["lr"] = "fast"
    assert main(["train", "--config", _write(tmp_path, raw), "-q"]) == 2
    assert "optim.lr" in capsys.readouterr().err

    raw = base_raw(tmp_path / "data", tmp_path / "out", model="no-such-model")
    assert main(["train", "--config", _write(tmp_path, raw), "-q"]) == 2
    assert "unknown model" in capsys.readouterr().err

    raw = base_raw(tmp_path / "data", tmp_path / "out", model_config={"base": "tiny", "depth": 3})
    assert main(["train", "--config", _write(tmp_path, raw), "-q"]) == 2
    assert "model_config" in capsys.readouterr().err

    raw = base_raw(tmp_path / "no-dataset", tmp_path / "out")
    assert main(["train", "--config", _write(tmp_path, raw), "-q"]) == 2
    assert "data.dataset" in capsys.readouterr().err

    assert main(["train", "--config", str(tmp_path / "missing.yaml"), "-q"]) == 2
    assert main(["train", "--config", _write(tmp_path, base_raw(tmp_path, tmp_path / "o")), "--set", "nokey",
                 "-q"]) == 2
    assert main(["train"]) == 2  # --config is required
    cfg = _write(tmp_path, base_raw(tmp_path / "data", tmp_path / "out"))
    assert main(["train", "--model", "dmdnet", "--config", cfg, "-q"]) == 2  # a config for another model
    assert "is a config for" in capsys.readouterr().err


def test_models_lists_the_registry(capsys):
    register_test_model()
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "dmdnet" in out and "uses_references" in out and "tiny" in out
    assert main(["models", "dmd*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["dmdnet"]
    assert rows[0]["flags"]["needs_landmarks"] is True and rows[0]["configs"]["tiny"]["size"] == 128
    assert rows[0]["pretrained"] == {"dmdnet-official": "paper"}


@pytest.mark.shared_data
def test_train_command_trains_resumes_and_refuses_a_changed_config(mini_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    raw = base_raw(mini_dataset, out)
    raw["schedule"] = {"total_steps": 2}
    cfg = _write(tmp_path, raw)
    assert main(["train", "--config", cfg, "--workers", "0", "-q"]) == 0
    text = capsys.readouterr().out
    assert "bench train: 2 done" in text and "checkpoint" in text
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "summary.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == TEST_MODEL and summary["step"] == 2 and "psnr_bicubic" in summary["val"]
    assert summary["device"] == "cpu" and summary["cpu_allocator"].startswith(("glibc heap reuse", "partial (", "default ("))
    # rerunning continues from the checkpoint: two more steps
    assert main(["train", "--config", cfg, "--steps", "4", "-q"]) == 0
    assert "resumed from step 2" in capsys.readouterr().out
    # another learning rate in the same folder is refused (exit 2) ...
    assert main(["train", "--config", cfg, "--set", "optim.lr=0.5", "-q"]) == 2
    assert "optim.lr" in capsys.readouterr().err
    # ... and --resume never refuses a folder that holds checkpoints
    assert main(["train", "--config", cfg, "--resume", "never", "-q"]) == 2
