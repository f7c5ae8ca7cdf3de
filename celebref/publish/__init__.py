"""Publishing a DATASET (and its degraded test sets) as a Hugging Face dataset repository.

* :mod:`celebref.publish.builder` — DATASET (+ TESTSETs) -> a local folder laid out exactly as it will be on the Hub:
  ``data/<config>/<split>-0000k-of-0000N.parquet`` shards, ``README.md`` (dataset card), ``build.json``,
  ``testsets/<name>.json``. Image bytes are embedded only with ``include_pixels=True`` and a named licence.
* :mod:`celebref.publish.card` — the dataset card (YAML front matter + body).
* :mod:`celebref.publish.push` — upload with huggingface_hub: create the repo, skip files already on the Hub with
  the same content, commit in batches with retries (a rerun resumes), README last, gating settings.
"""

from celebref.publish.builder import BuildResult, PublishUsageError, build_folder  # noqa: F401
from celebref.publish.push import PublishError, push_folder, redact, resolve_token  # noqa: F401
