"""The architecture, enforced (docs/ARCHITECTURE.md): the import layering (import-linter contracts in
pyproject.toml) and the size of function signatures in the build and evaluation paths."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: the build and evaluation paths whose functions must take at most MAX_POSITIONAL positional parameters
#: (keyword-only options aside) and at most MAX_PARAMETERS in all (``self``/``cls``, ``*args``, ``**kwargs`` aside)
SIGNATURE_CHECKED = ("celebref/pipeline", "celebref/ingest", "evaluation")
MAX_POSITIONAL = 6
MAX_PARAMETERS = 10


def _lint_imports() -> str:
    exe = Path(sys.executable).with_name("lint-imports")
    return str(exe) if exe.exists() else (shutil.which("lint-imports") or "")


def test_import_layering_contracts_hold():
    """kernel <- degradations <- baselines <- evaluation <- leaderboard <- apps; construction beside, on the kernel."""
    exe = _lint_imports()
    if not exe:
        pytest.fail("lint-imports (import-linter, requirements/test.txt) is not installed: run `make install`")
    r = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout, r.stdout[-2000:]


def _signature_violations(folder: Path) -> list[str]:
    bad = []
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = node.args
            positional = [x.arg for x in (*a.posonlyargs, *a.args)]
            if positional and positional[0] in ("self", "cls"):
                positional = positional[1:]
            total = len(positional) + len(a.kwonlyargs)
            if len(positional) > MAX_POSITIONAL or total > MAX_PARAMETERS:
                rel = path.relative_to(ROOT)
                bad.append(f"{rel}:{node.lineno} {node.name}: {len(positional)} positional, {total} in all")
    return bad


def test_build_and_evaluation_functions_take_few_parameters():
    bad = [v for sub in SIGNATURE_CHECKED for v in _signature_violations(ROOT / sub)]
    assert not bad, "functions over the limit (6 positional / 10 in all):\n" + "\n".join(bad)


def test_the_signature_check_sees_a_long_signature(tmp_path):
    """The checker itself: a 7-positional function and an 11-parameter keyword-only one are both caught."""
    (tmp_path / "m.py").write_text("def f(a, b, c, d, e, f, g):\n    pass\n\n"
                                   "def g(self, a, *, b, c, d, e, f, g, h, i, j, k):\n    pass\n\n"
                                   "def ok(self, a, b, c, d, e, f, *args, g=1, **kw):\n    pass\n")
    global ROOT
    old, ROOT = ROOT, tmp_path
    try:
        found = _signature_violations(tmp_path)
    finally:
        ROOT = old
    assert [v.split()[1] for v in found] == ["f:", "g:"]
