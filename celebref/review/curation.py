"""Curation files (written by the ``celebref review`` page, applied by ``celebref build --curation FILE``).

A curation is a list of human decisions keyed by stable face ids (``face_id``: source sha256 + face index), never
by identity numbers or cluster labels, which change between runs::

    {"format": "celebref.curation/1", "dataset_hash": "<sha256 of the reviewed dataset>", "created": "...",
     "actions": [
       {"seq": 1, "action": "reject_face",     "face_id": F},            # drop one face
       {"seq": 2, "action": "reject_identity", "face_id": F},            # drop the identity that holds F
       {"seq": 3, "action": "merge",           "face_id": F, "into": G}, # identity of F joins the identity of G
       {"seq": 4, "action": "split",           "face_ids": [F, ...]}]}   # these faces become a new identity

:func:`apply_curation` applies the actions to the clustering result (after clustering and name reconciliation,
before quality, near-duplicates, ``min_images`` and splits) in ascending ``seq`` order, whatever their order in
the file, so the result is deterministic. An action naming a face that is not in an identity of this run (unknown
id, or already rejected) is skipped and recorded as a warning; the build goes on.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from bfrcore.formats import Closed, FormatError, NonEmptyStr, Sha256, format_tag, validate_model

FORMAT = "celebref.curation/1"
ACTIONS = ("reject_face", "reject_identity", "merge", "split")
#: manifest ``reject_reason`` of faces a curation rejects (their ``reject_stage`` is ``curation``)
REJECT_REASONS = {"reject_face": "curation_reject_face", "reject_identity": "curation_reject_identity"}
MAX_WARNINGS = 50  # warnings listed in build.json (all are counted)


class _Action(Closed):
    seq: int = Field(ge=0)


class RejectFace(_Action):
    action: Literal["reject_face"]
    face_id: NonEmptyStr


class RejectIdentity(_Action):
    action: Literal["reject_identity"]
    face_id: NonEmptyStr


class Merge(_Action):
    action: Literal["merge"]
    face_id: NonEmptyStr
    into: NonEmptyStr


class Split(_Action):
    action: Literal["split"]
    face_ids: list[NonEmptyStr] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self):
        if len(set(self.face_ids)) != len(self.face_ids):
            raise ValueError("distinct face ids")
        return self


Action = Annotated[RejectFace | RejectIdentity | Merge | Split, Field(discriminator="action")]


class Curation(Closed):
    """A curation file (see the module docstring)."""

    format: Literal["celebref.curation/1"]
    dataset_hash: Sha256
    created: str | None = None
    actions: list[Action]

    @model_validator(mode="after")
    def _unique_seq(self):
        seqs = [a.seq for a in self.actions]
        if len(set(seqs)) != len(seqs):
            dup = min(s for s, n in Counter(seqs).items() if n > 1)
            raise ValueError(f"unique seq numbers (seq {dup} is used twice)")
        return self


def load_curation(path: str | os.PathLike) -> tuple[Curation, str]:
    """Read and validate a curation file; returns (curation, file sha256). A missing or malformed file raises
    :class:`FormatError` naming the file and field (the CLIs exit 2)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FormatError(path, "(file)", f"a curation file ({FORMAT})", "no such file") from None
    except IsADirectoryError:
        raise FormatError(path, "(file)", f"a curation file ({FORMAT})", "a folder") from None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(path, "(document)", "a JSON object", f"invalid JSON ({e})") from None
    format_tag(doc, path, (FORMAT,))
    cur = validate_model(Curation, doc, path)
    return cur, hashlib.sha256(data).hexdigest()


@dataclass
class CurationResult:
    """What :func:`apply_curation` did. ``groups``: the curated identity groups (same shape as the input);
    ``curated``: face_id -> description of the actions that touched it (``"merge#3"``, ``"split#4;reject_face#7"``);
    ``rejects``: face_id -> (reject_reason, detail); ``warnings``: skipped actions, in application order."""

    groups: object
    curated: dict[str, str] = field(default_factory=dict)
    rejects: dict[str, tuple[str, str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    applied: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)

    def record(self, curation: Curation, file_sha256: str) -> dict:
        """The ``curation`` record of build.json."""
        return {"format": FORMAT, "file_sha256": file_sha256, "reviewed_dataset_hash": curation.dataset_hash,
                "actions": len(curation.actions),
                "applied": {k: self.applied[k] for k in ACTIONS if self.applied[k]},
                "skipped": {k: self.skipped[k] for k in ACTIONS if self.skipped[k]},
                "faces_curated": len(self.curated), "faces_rejected": len(self.rejects),
                "warnings": self.warnings[:MAX_WARNINGS], "n_warnings": len(self.warnings)}


def apply_curation(groups, curation: Curation):
    """Apply ``curation`` to an :class:`celebref.pipeline.identity.IdentityGroups` (not modified; a curated copy is
    returned in :class:`CurationResult`). Actions run in ascending ``seq``:

    - ``reject_face``: the face leaves its identity and is rejected (``curation_reject_face``);
    - ``reject_identity``: every face of the identity holding ``face_id`` is rejected (``curation_reject_identity``);
    - ``merge``: every face of the identity holding ``face_id`` moves to the identity holding ``into`` (whose name
      it keeps; the other name becomes an alias);
    - ``split``: the listed faces leave their identities and form a new, unnamed identity (faces of the list that
      are not in an identity are skipped with a warning).

    Identities emptied by an action disappear. Faces not in an identity of this run make the action a warning."""
    from celebref.pipeline.identity import IdentityGroups

    out = IdentityGroups(clusters=dict(groups.clusters), group_of=dict(groups.group_of),
                         groups=copy.deepcopy(groups.groups), rejects=dict(groups.rejects),
                         threshold=groups.threshold, stats=groups.stats)
    res = CurationResult(out)
    members = out.groups

    def where(fid: str) -> str | None:
        g = out.group_of.get(fid)
        return g if g in members else None

    def missing(fid: str) -> str:
        if fid in res.rejects:
            return f"face {fid} was already rejected by this curation"
        if fid in groups.rejects:
            return f"face {fid} is not in an identity (rejected at the identity stage: {groups.rejects[fid][0]})"
        return f"unknown face id {fid} (not a clustered face of this build)"

    def tag(fid: str, label: str) -> None:
        res.curated[fid] = f"{res.curated[fid]};{label}" if fid in res.curated else label

    def remove(fid: str) -> None:
        g = out.group_of.pop(fid)
        members[g]["faces"] = [f for f in members[g]["faces"] if f != fid]
        if not members[g]["faces"]:
            del members[g]

    for a in sorted(curation.actions, key=lambda a: a.seq):
        label = f"{a.action}#{a.seq}"
        if a.action in ("reject_face", "reject_identity", "merge"):
            g = where(a.face_id)
            if g is None:
                res.warnings.append(f"{label}: {missing(a.face_id)}; skipped")
                res.skipped[a.action] += 1
                continue
        if a.action == "reject_face":
            remove(a.face_id)
            res.rejects[a.face_id] = (REJECT_REASONS["reject_face"], f"rejected by review ({label})")
            tag(a.face_id, label)
        elif a.action == "reject_identity":
            for f in list(members[g]["faces"]):
                remove(f)
                res.rejects[f] = (REJECT_REASONS["reject_identity"],
                                  f"identity of {a.face_id} rejected by review ({label})")
                tag(f, label)
        elif a.action == "merge":
            gt = where(a.into)
            if gt is None:
                res.warnings.append(f"{label}: target {missing(a.into)}; skipped")
                res.skipped[a.action] += 1
                continue
            if gt == g:
                res.warnings.append(f"{label}: {a.face_id} and {a.into} are already one identity; nothing to do")
                res.skipped[a.action] += 1
                continue
            src, dst = members.pop(g), members[gt]
            dst["faces"] = sorted(dst["faces"] + src["faces"])
            names = [n for n in [src["name"], *src["aliases"]] if n and n != dst["name"] and n not in dst["aliases"]]
            dst["aliases"] = list(dst["aliases"]) + list(dict.fromkeys(names))
            for f in src["faces"]:
                out.group_of[f] = gt
                tag(f, label)
        else:  # split
            known = [f for f in a.face_ids if where(f) is not None]
            for f in a.face_ids:
                if f not in known:
                    res.warnings.append(f"{label}: {missing(f)}; left out of the split")
            if not known:
                res.skipped[a.action] += 1
                continue
            for f in known:
                remove(f)
            anchor = min(known)
            key = f"curated:{anchor}"
            members[key] = {"name": None, "aliases": [], "cluster": int(out.clusters.get(anchor, -1)),
                            "faces": sorted(known)}
            for f in known:
                out.group_of[f] = key
                tag(f, label)
        res.applied[a.action] += 1
    return res
