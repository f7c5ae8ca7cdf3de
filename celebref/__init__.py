"""celebref: dataset construction — build (`celebref.pipeline`, `celebref.ingest`), review and curation, publishing.
The shared I/O, weights and CLI plumbing live in the kernel, `bfrcore`."""

from bfrcore import __version__  # noqa: F401  (the one definition)
