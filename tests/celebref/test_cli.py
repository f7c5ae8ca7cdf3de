"""The two command-line tools: help, exit codes, the weights and inspect commands (via main() and the scripts)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bfrcli.bench import main as bench_main
from bfrcli.celebref import main as celebref_main
from bfrcore.imageio import write_png
from tests.helpers import tiny_image


def test_help_exits_zero(capsys):
    assert bench_main(["--help"]) == 0
    assert "weights" in capsys.readouterr().out
    assert celebref_main(["--help"]) == 0
    assert "inspect" in capsys.readouterr().out


def test_bad_usage_exits_two(capsys):
    assert bench_main([]) == 2
    assert bench_main(["no-such-command"]) == 2
    assert bench_main(["weights", "fetch"]) == 2  # nothing named
    assert bench_main(["weights", "fetch", "no-such-weights"]) == 2
    assert "unknown weights" in capsys.readouterr().err


def test_weights_status_lists_every_entry(isolated_weights, capsys):
    from bfrcore import weights

    assert bench_main(["weights", "status", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == {e.name for e in weights.list_entries()}
    for r in rows:
        if r["present"]:
            assert Path(r["path"]).exists()
        else:
            assert r["expected"][0].startswith(str(isolated_weights))
    assert {r["name"] for r in rows if r["present"]} >= {"dlib-resnet-face-v1", "lpips-vgg-v0.1"}
    assert bench_main(["weights", "status"]) == 0
    out = capsys.readouterr().out
    assert "MISSING" in out and "present (package)" in out


def test_weights_list(capsys):
    assert bench_main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "dmdnet-official" in out and "license:" in out


def test_weights_import_exit_codes(isolated_weights, tmp_path, capsys):
    bad = tmp_path / "alexnet-owt-7be5be79.pth"
    bad.write_bytes(b"not alexnet")
    assert bench_main(["weights", "import", "torchvision-alexnet", str(bad)]) == 2
    assert "expected" in capsys.readouterr().err
    assert bench_main(["weights", "import", "torchvision-alexnet", str(tmp_path / "missing.pth")]) == 2
    # a correct file (the LPIPS heads ship in the lpips wheel): exit 0 and installed in the cache
    from bfrcore import weights

    src = weights.candidate_paths(weights.get_entry("lpips-vgg-v0.1"))[1][1]
    copy = tmp_path / "vgg.pth"
    shutil.copyfile(src, copy)
    assert bench_main(["weights", "import", "lpips-vgg-v0.1", str(copy)]) == 0
    assert (isolated_weights / "vgg.pth").is_file()


def test_weights_fetch_failure_exits_one(isolated_weights, capsys, monkeypatch):
    from bfrcore.weights import registry as reg

    entry = reg.WeightsEntry(name="t-cli-offline", filename="o.bin", description="t", license="t",
                             used_by=("t",), url="http://no-such-host.invalid/o.bin")
    reg.register(entry)
    try:
        assert bench_main(["weights", "fetch", "t-cli-offline", "--quiet"]) == 1
        assert "failed 1" in capsys.readouterr().out
    finally:
        reg._REGISTRY.pop(entry.name)


def test_inspect_exit_codes(tmp_path, capsys):
    good = write_png(tmp_path / "ok.png", tiny_image())
    (tmp_path / "bad.jpg").write_bytes(b"garbage" * 20)
    assert celebref_main(["inspect", str(good)]) == 0
    assert celebref_main(["inspect", str(tmp_path)]) == 2  # one bad file inside
    out = capsys.readouterr().out
    assert "not_an_image" in out and "skipped 1" in out
    assert celebref_main(["inspect", str(tmp_path / "nope")]) == 2
    assert celebref_main(["inspect", "--json", str(good)]) == 0


@pytest.mark.parametrize("tool", ["bench", "celebref"])
def test_console_scripts_installed(tool):
    exe = Path(sys.executable).parent / tool
    if not exe.exists():
        pytest.skip(f"{tool} console script not installed in this environment (pip install -e .)")
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "usage:" in r.stdout


def _library_errors():
    """(exception, expected exit code) for every error type the apps map (bfrcore.cliutil.run_guarded)."""
    from bfrcore.celebrefhq_split import SplitError
    from bfrcore.cliutil import UsageError
    from bfrcore.errors import ConfigError, InputError
    from bfrcore.formats import FormatError
    from bfrcore.imageio import ImageReadError
    from bfrcore.safepath import ArchiveError, UnsafePathError
    from bfrcore.testset import TestSetError
    from bfrcore.weights import MissingWeightsError, UnknownWeightsError, WeightsError, get_entry

    return [
        (InputError("bad value"), 2), (ConfigError("unknown key"), 2), (UsageError("--flag"), 2),
        (ImageReadError("corrupt", "broken", "a.png"), 2), (UnsafePathError("path escapes its root: '..'"), 2),
        (ArchiveError("x.zip: unreadable zip archive"), 2), (SplitError("root: not a folder"), 2),
        (TestSetError("T is not a test set"), 2), (FormatError("f.json", "k", "an int", "'a'"), 2),
        (FileNotFoundError("no such file"), 2), (NotADirectoryError("not a folder"), 2),
        (UnknownWeightsError("no-such-weights"), 2),
        (FormatError("f.json", "k", "an int", "'a'", writing=True), 1), (MissingWeightsError(get_entry("lpips-vgg-v0.1")), 1),
        (WeightsError("download failed"), 1), (RuntimeError("bug"), 1),
    ]


@pytest.mark.parametrize("case", range(len(_library_errors())))
def test_run_guarded_maps_error_types_to_exit_codes(case, capsys):
    """Bad input found by library code (InputError and its kernel subclasses, a malformed input file, a missing
    file, an unknown weights name) exits 2 with one `error:` line; our own failures exit 1."""
    import argparse

    from bfrcore.cliutil import run_guarded

    exc, code = _library_errors()[case]

    def command(args):
        raise exc

    assert run_guarded(command, argparse.Namespace(command="t", verbose=0)) == code
    assert f"error: {exc}" in capsys.readouterr().err


def test_kernel_bad_input_errors_are_input_errors():
    """The kernel's bad-input types derive from bfrcore.errors.InputError (so library callers can catch one type
    and the apps need no per-command conversion); UsageError stays the command modules' own subclass."""
    from bfrcore.celebrefhq_split import SplitError
    from bfrcore.cliutil import UsageError
    from bfrcore.errors import ConfigError, InputError
    from bfrcore.imageio import ImageReadError
    from bfrcore.safepath import ArchiveError, UnsafePathError
    from bfrcore.testset import TestSetError

    for cls in (ConfigError, ImageReadError, UnsafePathError, ArchiveError, SplitError, TestSetError, UsageError):
        assert issubclass(cls, InputError) and issubclass(cls, ValueError), cls
    assert not issubclass(ImageReadError, UsageError)


def test_command_modules_are_named_package_commands():
    """One command module per package, named the same way: ``<package>.commands`` or a submodule of the package
    ``<package>.commands`` (one per subcommand group); ``bfrcli.weights`` spans the packages."""
    import re

    from bfrcli import bench, celebref

    for mod in (*bench.COMMANDS, *celebref.COMMANDS):
        assert mod == "bfrcli.weights" or re.fullmatch(r"[a-z]+\.commands(\.[a-z_]+)?", mod), mod
    assert {m.split(".")[0] for m in bench.COMMANDS} == {"bfrcli", "baselines", "degradations", "evaluation",
                                                         "leaderboard"}


def test_library_code_does_not_use_the_cli_usage_error():
    """UsageError belongs to the command modules (``<package>/commands``) and bfrcore.cliutil; library code raises
    bfrcore.errors.InputError or a subclass of its own."""
    import ast

    root = Path(__file__).resolve().parents[2]
    bad = []
    for pkg in ("bfrcore", "celebref", "degradations", "baselines", "evaluation", "leaderboard"):
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root)
            if "commands" in rel.parts or rel.name == "commands.py" or rel.as_posix() == "bfrcore/cliutil.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.ImportFrom)
                         else [node.attr] if isinstance(node, ast.Attribute)
                         else [node.id] if isinstance(node, ast.Name) else [])
                if "UsageError" in names:
                    bad.append(f"{rel}:{node.lineno}")
    assert not bad, "library code using bfrcore.cliutil.UsageError:\n" + "\n".join(bad)
