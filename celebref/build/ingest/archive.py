"""zip/tar source: extracted once into the cache with :func:`celebref.safepath.safe_extract` (members that would
escape, links and device files are refused before anything is written), then read as a folder tree or, when it
holds one, the CelebRef-HQ layout. A single wrapping top-level folder that itself holds folders is skipped."""

from __future__ import annotations

from pathlib import Path

from celebref.build.config import IngestConfig
from celebref.build.ingest import IngestResult, SourceError, is_celebrefhq_layout
from celebref.build.ingest.celebrefhq import ingest_celebrefhq
from celebref.build.ingest.folder import ingest_folder
from celebref.imageio import file_sha256, write_bytes_atomic
from celebref.safepath import UnsafePathError, safe_extract


def extract_archive(archive: Path, cache_root: Path) -> Path:
    if not archive.is_file():
        raise SourceError(f"archive {archive} not found")
    sha = file_sha256(archive)
    dest = Path(cache_root) / "archives" / sha[:16]
    done = dest / ".complete"
    if not done.is_file():
        try:
            safe_extract(archive, dest / "tree")
        except UnsafePathError as e:
            raise SourceError(f"unsafe archive {archive}: {e}") from e
        except ValueError as e:
            raise SourceError(str(e)) from e
        write_bytes_atomic(done, sha.encode())
    return dest / "tree"


def _content_root(tree: Path) -> Path:
    entries = [p for p in tree.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        inner = [p for p in entries[0].iterdir() if not p.name.startswith(".")]
        if inner and all(p.is_dir() for p in inner):
            return entries[0]
    return tree


def ingest_archive(archive: Path, cache_root: Path, cfg: IngestConfig, *, source: str,
                   source_index: int) -> IngestResult:
    tree = extract_archive(archive, cache_root)
    root = _content_root(tree)
    shown = str(archive) + ("" if root == tree else "!" + root.name)
    if is_celebrefhq_layout(root):
        return ingest_celebrefhq(root, cfg, source=source, source_index=source_index, display_root=shown)
    return ingest_folder(root, cfg, source=source, source_index=source_index, source_kind="archive",
                         display_root=shown)
