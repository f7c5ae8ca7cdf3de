"""evaluation package."""

from evaluation import weights_checks  # noqa: F401  (registers the content checks of the metrics' weights files)
