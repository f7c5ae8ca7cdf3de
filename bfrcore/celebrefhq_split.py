"""``celebref-hq-v1``: the canonical, hash-pinned identity split of CelebRef-HQ (identity folder names only).

The rule (reproducible on any copy; :func:`split_identities`, :func:`reference_lists`):

1. The identity names are the folder names of the copy (``<root>/<name>/<n>.png``), sorted.
2. Each name gets the key ``sha256("celebref-hq-v1:<seed>:split:<name>")`` (hex, seed 0); names sorted by (key,
   name); the first ``n_test`` (150, as DMDNet's and ReF-LDM's test sets) are the test identities, the rest train.
3. In a test identity every image is a target. Its images are ordered by (``sha256("celebref-hq-v1:<seed>:ref:
   <name>/<file>")``, file); a target's references are the others in that order (the target never is its own).

The shipped ``celebref_hq_v1.json`` applies the rule to the *documented* name list: CelebRef-HQ has 1,005
identities in 5-digit folders; the names ``00001`` .. ``01005`` are an assumption consistent with every folder seen
(00005, 00022, 00075, 00082, 00086, 00089, 00119, 00121, 00146) but not confirmed. The file records that list's
sha256 and its sha256 is pinned here (:data:`SPLIT_SHA256`). On a copy whose names hash to the same value, the
rule gives the shipped test identities exactly; on any other copy it gives that copy's split and says so.
Construction-side (stdlib only, plus :mod:`bfrcore.errors`): `celebref build --emit-split FILE` and
`bench protocols split` both call :func:`emit_for_copy`; the `celebref-hq-v1` protocol reads
:func:`shipped_test_identities`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from bfrcore.errors import InputError

NAME = "celebref-hq-v1"
FORMAT = "celebref.identity-split/1"
SEED = 0
N_TEST = 150
DOCUMENTED_NAMES = tuple(f"{i:05d}" for i in range(1, 1006))
SPLIT_FILE = Path(__file__).with_name("celebref_hq_v1.json")
#: sha256 of the shipped celebref_hq_v1.json (bytes); a test regenerates the file from the rule and compares.
SPLIT_SHA256 = "c131a91c4df4152fd67a9c2d27c7c76d11aacb5d57629fae2db044628b984ca5"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class SplitError(InputError):
    """A copy the rule cannot split (not a folder, no identity folders, too few identities) or a changed shipped
    file."""


def _key(purpose: str, item: str, seed: int = SEED) -> str:
    return hashlib.sha256(f"{NAME}:{seed}:{purpose}:{item}".encode()).hexdigest()


def names_sha256(names) -> str:
    """sha256 of the sorted names, one per line, each followed by a newline."""
    return hashlib.sha256("".join(f"{n}\n" for n in sorted(names)).encode()).hexdigest()


def split_identities(names, *, seed: int = SEED, n_test: int = N_TEST) -> tuple[list[str], list[str]]:
    """(test, train) identity names, each sorted. Needs more than ``n_test`` names."""
    names = sorted(set(names))
    if len(names) <= n_test:
        raise SplitError(f"{NAME}: {len(names)} identities; the rule needs more than {n_test}")
    order = sorted(names, key=lambda n: (_key("split", n, seed), n))
    return sorted(order[:n_test]), sorted(order[n_test:])


def reference_lists(name: str, files, *, seed: int = SEED) -> dict[str, list[str]]:
    """{target file: reference files} for one test identity (rule step 3)."""
    order = sorted(set(files), key=lambda f: (_key("ref", f"{name}/{f}", seed), f))
    return {t: [f for f in order if f != t] for t in sorted(order)}


def split_document(names, *, seed: int = SEED, n_test: int = N_TEST, confirmed: bool = False,
                   files: dict[str, list[str]] | None = None) -> dict:
    """The split file's content for ``names`` (and, with ``files`` = {name: image files}, every test image's
    references)."""
    test, train = split_identities(names, seed=seed, n_test=n_test)
    doc = {
        "format": FORMAT,
        "name": NAME,
        "rule": {"seed": seed, "n_test_identities": n_test,
                 "identity_order": f"sha256('{NAME}:<seed>:split:<name>') hex ascending, ties by name; first "
                                   "n_test are test",
                 "references": f"every image of a test identity is a target; references = the other images "
                               f"ordered by sha256('{NAME}:<seed>:ref:<name>/<file>'), ties by file",
                 "code": "bfrcore/celebrefhq_split.py"},
        "identity_names": {"count": len(set(names)), "sha256": names_sha256(set(names)), "confirmed": confirmed,
                           "source": ("the identity folders of the copy this file was emitted from" if confirmed else
                                      "documented: CelebRef-HQ has 1,005 identities in 5-digit folders; names "
                                      "00001..01005 assumed (folders seen: 00005 00022 00075 00082 00086 00089 "
                                      "00119 00121 00146), not confirmed")},
        "test_identities": test,
        "n_train_identities": len(train),
    }
    if files is not None:
        doc["references"] = {n: reference_lists(n, files.get(n, []), seed=seed) for n in test}
        doc["n_test_images"] = sum(len(v) for v in doc["references"].values())
    return doc


def dumps(doc: dict) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode()


def shipped_document() -> dict:
    """The shipped split, after checking its sha256 against :data:`SPLIT_SHA256`."""
    data = SPLIT_FILE.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != SPLIT_SHA256:
        raise SplitError(f"{SPLIT_FILE}: sha256 {got} != pinned {SPLIT_SHA256} (the shipped split was changed)")
    return json.loads(data)


def scan_copy(root: str | os.PathLike) -> dict[str, list[str]]:
    """{identity folder name: image file names} of a CelebRef-HQ copy (``root/<name>/<file>``)."""
    root = Path(root)
    if not root.is_dir():
        raise SplitError(f"{root}: not a folder (expected a CelebRef-HQ copy: <root>/<identity>/<n>.png)")
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f.name for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        if files:
            out[d.name] = files
    if not out:
        raise SplitError(f"{root}: no identity folder with images (expected <root>/<identity>/<n>.png)")
    return out


def emit_for_copy(root: str | os.PathLike, *, n_test: int = N_TEST) -> tuple[dict, bool]:
    """The split of a user's copy with per-test-image references, and whether its identity names are the ones
    the shipped file was made from (then its test identities equal the shipped ones)."""
    files = scan_copy(root)
    doc = split_document(list(files), n_test=n_test, confirmed=True, files=files)
    shipped = json.loads(SPLIT_FILE.read_bytes())
    same = doc["identity_names"]["sha256"] == shipped["identity_names"]["sha256"] and n_test == N_TEST
    doc["matches_shipped"] = same
    return doc, same


def shipped_test_identities() -> list[str]:
    """The shipped test identities (hash-checked)."""
    return list(shipped_document()["test_identities"])
