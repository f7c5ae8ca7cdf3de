"""The released CelebRef-HQ layout: ``<5-digit identity>/<n>.png``, FFHQ-aligned 512x512.

Items are marked ``aligned``: the faces stage still detects landmarks on them but keeps the pixels as they are when
the face already sits where the FFHQ recipe puts it (see faces_stage). The identity folder is the weak name label.
"""

from __future__ import annotations

from pathlib import Path

from celebref.ingest import IngestResult, SourceError, is_celebrefhq_layout
from celebref.ingest.config import IngestConfig
from celebref.ingest.folder import ingest_folder


def ingest_celebrefhq(root: Path, cfg: IngestConfig, *, source: str, source_index: int,
                      display_root: str | None = None) -> IngestResult:
    if not is_celebrefhq_layout(root):
        raise SourceError(f"{root} is not in the CelebRef-HQ layout (<5-digit id>/<n>.png)")

    def prov(rel: Path) -> dict:
        return {"celebref_identity": rel.parts[0], "celebref_n": int(Path(rel.parts[-1]).stem)}

    return ingest_folder(root, cfg, source=source, source_index=source_index, source_kind="celebrefhq",
                         display_root=display_root, aligned=True, name_mode="first_dir", extra_provenance=prov)
