"""What ``--protocol NAME`` does to ``bench evaluate`` / ``bench score``, and how a protocol's test set is made.

With a protocol the run takes the protocol's metrics, metric options, reference count and mode; a command-line
value that contradicts the protocol is a :class:`ProtocolError` (an input error: exit 2), never silently replaced.
The test set must have been made by the protocol's recipe (preset name and version, seed); other deviations (fewer
images than published, a ``--limit``) are recorded in ``summary.json`` under ``protocol.deviations`` and shown by
the leaderboard. Metrics the protocol names that this installation does not have are reported unavailable with the
reason (not a crash).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from evaluation.protocols.model import Protocol, ProtocolError
from evaluation.protocols.registry import get_protocol

#: The command line's defaults (evaluation.commands) for the options a protocol fixes.
CLI_DEFAULTS = {"crop_border": 0, "convention": "basicsr", "fid_mode": "clean", "fid_stats": None,
                "max_refs": None, "metrics": None}

UNREGISTERED_HINTS = {
    "fid_ffhq": "one run computes one FID; this protocol's run reports FID against the test set's HQ images "
                "(`fid`). For FID against FFHQ score the same outputs again without --protocol and with "
                "--fid-stats ffhq512-fid-stats-clean",
}


@dataclass
class ProtocolRun:
    """The settings a protocol gives one run."""

    protocol: Protocol
    metrics: list[str]
    unavailable: dict[str, str]
    deviations: list[str] = field(default_factory=list)

    def record(self) -> dict:
        return {**self.protocol.record(), "conforms": not self.deviations, "deviations": list(self.deviations)}


def unregistered_reason(metric: str, protocol: Protocol) -> str:
    if metric in UNREGISTERED_HINTS:
        return UNREGISTERED_HINTS[metric]
    return (f"metric {metric!r} (named by protocol {protocol.name}) is not in this installation's metric registry "
            "(`bench evaluate --list-metrics`); update the suite to a version that provides it, then run the "
            "protocol again")


def split_metrics(protocol: Protocol) -> tuple[list[str], dict[str, str]]:
    """(registered metric names to compute, {unregistered name: reason})."""
    from evaluation.metrics import list_metrics

    known = set(list_metrics())
    names = protocol.metric_names
    return ([n for n in names if n in known],
            {n: unregistered_reason(n, protocol) for n in names if n not in known})


def check_testset(protocol: Protocol, testset: str | os.PathLike, dataset_root=None,
                  limit: int | None = None) -> list[str]:
    """:class:`ProtocolError` when the test set was not made by the protocol's recipe (a folder that is no test set:
    :class:`bfrcore.testset.TestSetError`); else the deviations (may be empty)."""
    from bfrcore.testset import TestSet

    r = protocol.testset
    ts = TestSet.load(testset, dataset_root=dataset_root)
    got = (ts.preset_name, ts.preset_version, ts.seed)
    want = (r.preset, r.preset_version, r.seed)
    if got != want:
        raise ProtocolError(f"--testset {testset}: made with preset {got[0]}@{got[1]} seed {got[2]}; protocol "
                         f"{protocol.name} needs preset {want[0]}@{want[1]} seed {want[2]} (make it with `bench "
                         f"protocols testset {protocol.name} --dataset D --out T`)")
    dev = []
    n = len(ts.image_ids)
    if limit is not None and limit < n:
        dev.append(f"--limit {limit}: {limit} of the test set's {n} images scored")
    if r.n_images is not None and n != r.n_images:
        dev.append(f"test set has {n} images; the protocol's has {r.n_images}")
    idents = ts.dataset.images.loc[ts.image_ids, "identity"].astype(str)
    if r.n_identities is not None and idents.nunique() != r.n_identities:
        dev.append(f"test set has {idents.nunique()} identities; the protocol's has {r.n_identities}")
    if r.identity_split:
        from bfrcore.celebrefhq_split import shipped_test_identities

        allowed = set(shipped_test_identities())
        ids = idents
        outside = sorted(set(ids) - allowed)
        if outside:
            dev.append(f"{len(outside)} identities are not test identities of {r.identity_split} "
                       f"(e.g. {outside[0]})")
    if ts.skipped:
        dev.append(f"{len(ts.skipped)} dataset images were skipped when the test set was made")
    return dev


def apply_to_args(args, *, command: str) -> ProtocolRun | None:
    """Set ``args`` (an evaluate/score namespace) from ``args.protocol``; None without a protocol."""
    name = getattr(args, "protocol", None)
    if not name:
        return None
    try:
        p = get_protocol(name)
    except ProtocolError as e:
        raise ProtocolError(f"--protocol: {e}") from e
    fixed = {"crop_border": p.options.crop_border, "convention": p.options.convention,
             "fid_mode": p.options.fid_mode, "fid_stats": p.options.fid_stats, "max_refs": p.references.max_refs}
    for key, value in fixed.items():
        given = getattr(args, key)
        if given != CLI_DEFAULTS[key] and given != value:
            flag = "--" + key.replace("_", "-")
            fixed_to = "unset (its default)" if value is None else value
            raise ProtocolError(f"{flag} {given}: protocol {p.name} fixes it to {fixed_to}; drop {flag} (or run "
                             "without --protocol)")
        setattr(args, key, value)
    if args.metrics is not None:
        raise ProtocolError(f"--metrics: protocol {p.name} fixes the metrics ({' '.join(p.metric_names)}); drop "
                         "--metrics (or run without --protocol)")
    if p.references.kind == "none":
        if args.mode == "specific":
            raise ProtocolError(f"--mode specific: protocol {p.name} is blind (no references)")
        args.mode = "generic"
    metrics, unavailable = split_metrics(p)
    args.metrics = metrics
    if args.testset is None:
        raise ProtocolError("--testset is required")
    run = ProtocolRun(p, metrics, unavailable)
    run.deviations = check_testset(p, args.testset, args.dataset_root, args.limit)
    return run


# ----------------------------------------------------------------------------------------------- test sets
def make_testset(protocol: Protocol, dataset: str | os.PathLike, out: str | os.PathLike, *, workers: int = 1,
                 limit: int | None = None, name: str | None = None, progress=None):
    """Generate the protocol's test set from an HQ dataset folder (bfrcore.dataset format)."""
    from bfrcore.dataset import FaceDataset
    from degradations.presets import get_preset
    from degradations.testset import generate_testset
    from evaluation.protocols.definitions import PROTOCOL_PRESETS

    r = protocol.testset
    preset = PROTOCOL_PRESETS.get(r.preset) or get_preset(r.preset)
    if preset.version != r.preset_version:
        raise ProtocolError(f"preset {r.preset} is at version {preset.version} here; protocol {protocol.label} "
                            f"needs version {r.preset_version}")
    ds = dataset if isinstance(dataset, FaceDataset) else FaceDataset.load(dataset)
    ids = None
    split = r.split
    if r.identity_split:
        from bfrcore.celebrefhq_split import shipped_test_identities

        allowed = set(shipped_test_identities())
        all_ids = ds.image_ids(None)
        idents = ds.images.loc[all_ids, "identity"].astype(str)
        ids = [i for i in all_ids if idents[i] in allowed]
        if not ids:
            raise ProtocolError(f"dataset {ds.root}: none of its identities is a test identity of "
                                f"{r.identity_split} (identity names must be CelebRef-HQ folder names)")
    return generate_testset(ds, preset, r.seed, Path(out), split=split, ids=ids, limit=limit, name=name,
                            workers=workers, progress=progress)
