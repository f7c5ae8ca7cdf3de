"""celebref: build CelebRef-HQ-style reference face datasets (and the shared I/O, weights and CLI plumbing)."""

__version__ = "0.1.0"
