"""Shared pieces of the two command-line tools (`celebref`, `bench`): flags, exit codes, logging, summaries.

Commands are thin: parse, call a library function, print one summary. A command module exposes
``register(subparsers, common)`` which adds its parser (with ``parents=[common]``) and sets ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from bfrcore.errors import InputError
from bfrcore.progress import progress  # noqa: F401  (command modules use cliutil.progress)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

log = logging.getLogger("celebref")


class UsageError(InputError):
    """Bad command-line arguments (raised by command modules only; library code raises
    :class:`bfrcore.errors.InputError` subclasses): the command exits with code 2 and this message."""


# ----------------------------------------------------------------------------------------------- flags
def common_parser() -> argparse.ArgumentParser:
    """Flags every subcommand accepts: -v/--verbose (repeatable) and -q/--quiet."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("output control")
    g.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    g.add_argument("-q", "--quiet", action="store_true", help="only warnings, errors and the final summary")
    return p


def add_out(p: argparse.ArgumentParser, required: bool = True, help: str = "output folder") -> None:
    p.add_argument("--out", "-o", type=Path, required=required, help=help)


def add_seed(p: argparse.ArgumentParser, default: int = 0) -> None:
    p.add_argument("--seed", type=int, default=default, help=f"global random seed (default {default})")


def positive_int(text: str) -> int:
    """argparse ``type`` for counts such as ``--limit``: an integer >= 1 (0 or negative is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (>= 1), got {value}")
    return value


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"),
        help="where to run torch work: cuda if available with 'auto' (default)",
    )


def add_workers(p: argparse.ArgumentParser, default: int = 1) -> None:
    p.add_argument("--workers", type=int, default=default, help=f"parallel worker processes (default {default})")


def add_config(p: argparse.ArgumentParser, help: str = "YAML config file") -> None:
    p.add_argument("--config", type=Path, default=None, help=help)


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    level = logging.WARNING if quiet else (logging.INFO if verbose <= 1 else logging.DEBUG)
    if verbose == 0 and not quiet:
        level = logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("PIL", "matplotlib", "urllib3", "httpx", "httpx2", "httpcore", "httpcore2", "numba", "filelock",
                  "fsspec"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))




# ----------------------------------------------------------------------------------------------- summary
@dataclass
class RunSummary:
    """What a command did: counts, skips by reason, outputs. Printed once at the end."""

    command: str
    done: int = 0
    skipped: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    outputs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] += n

    def fail(self, reason: str, n: int = 1) -> None:
        self.failed[reason] += n

    def to_dict(self) -> dict:
        return {
            "command": self.command,
            "done": self.done,
            "skipped": dict(self.skipped),
            "failed": dict(self.failed),
            "outputs": self.outputs,
            "notes": self.notes,
        }

    def render(self) -> str:
        lines = [f"== {self.command}: {self.done} done"]
        if self.skipped:
            lines.append(f"   skipped {sum(self.skipped.values())}: " + ", ".join(
                f"{k} {v}" for k, v in self.skipped.most_common()))
        if self.failed:
            lines.append(f"   failed {sum(self.failed.values())}: " + ", ".join(
                f"{k} {v}" for k, v in self.failed.most_common()))
        for k, v in self.outputs.items():
            lines.append(f"   {k}: {v}")
        lines += [f"   note: {n}" for n in self.notes]
        return "\n".join(lines)

    def print(self, file=None) -> None:
        print(self.render(), file=file or sys.stdout, flush=True)


# ----------------------------------------------------------------------------------------------- main
def build_main(prog: str, description: str, command_modules: Sequence[str]) -> Callable[[Sequence[str] | None], int]:
    """Make a ``main(argv) -> exit code`` for a tool made of the given command modules."""

    def make_parser() -> argparse.ArgumentParser:
        common = common_parser()
        parser = argparse.ArgumentParser(prog=prog, description=description, parents=[common])
        sub = parser.add_subparsers(dest="command", metavar="COMMAND")
        sub.required = True
        for mod_name in command_modules:
            importlib.import_module(mod_name).register(sub, common)
        return parser

    def main(argv: Sequence[str] | None = None) -> int:
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        parser = make_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # argparse: 0 for --help, 2 for bad usage
            return int(e.code or 0)
        setup_logging(args.verbose, args.quiet)
        return run_guarded(args.func, args)

    main.make_parser = make_parser  # type: ignore[attr-defined]
    return main


def run_guarded(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command; map errors to exit codes with one clear message (no traceback unless -vv).

    Exit 2 (bad input the user can fix): :class:`bfrcore.errors.InputError` and its subclasses (``UsageError``,
    ``ConfigError``, ``ImageReadError``, ``UnsafePathError``, ``ArchiveError``, ``SplitError``, ``TestSetError``,
    ...), a malformed input file (``FormatError`` on reading), a missing file or folder, an unknown weights name.
    Exit 1: our own output failing its contract (``FormatError`` on writing, with a traceback), weights that are
    missing or fail to download/verify, an interrupt, any other exception (with a traceback).
    """
    from bfrcore.formats import FormatError
    from bfrcore.weights import UnknownWeightsError, WeightsError

    try:
        rc = func(args)
        return EXIT_OK if rc is None else int(rc)
    except FormatError as e:  # a malformed input file: exit 2; our own writer's output failing its contract: 1
        _report(e, args, traceback=e.writing)
        return EXIT_FAILURE if e.writing else EXIT_USAGE
    except (InputError, FileNotFoundError, NotADirectoryError, UnknownWeightsError) as e:
        _report(e, args)
        return EXIT_USAGE
    except WeightsError as e:  # MissingWeightsError, download or verification failures
        _report(e, args)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as e:  # noqa: BLE001 - top level
        _report(e, args, traceback=True)
        return EXIT_FAILURE


def _report(e: BaseException, args: argparse.Namespace, traceback: bool = False) -> None:
    if getattr(args, "verbose", 0) >= 2 or traceback:
        log.exception("%s failed", getattr(args, "command", "command"))
    print(f"error: {e}", file=sys.stderr)


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))
