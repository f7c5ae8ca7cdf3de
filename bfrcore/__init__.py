"""bfrcore: the shared kernel under the five packages (image I/O, safe paths, typed configs, tensor
conversions, CPU allocator, weights registry, face analysis, artefact formats, pure metric functions).
Imports none of celebref, degradations, baselines, evaluation, leaderboard."""

#: the suite's version: the one place it is written (pyproject.toml reads it: [tool.setuptools.dynamic])
__version__ = "0.1.0"
