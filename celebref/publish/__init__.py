"""Publishing a DATASET (and its degraded test sets) as a Hugging Face dataset repository.

* :mod:`celebref.publish.builder` — DATASET (+ TESTSETs) -> a local folder laid out exactly as it will be on the Hub:
  ``data/<config>/<split>-0000k-of-0000N.parquet`` shards, ``README.md`` (dataset card), ``build.json``,
  ``testsets/<name>.json``. Image bytes are embedded only with ``include_pixels=True`` and a named licence. Written
  next to the target and renamed into place when complete.
* :mod:`celebref.publish.card` — the dataset card (YAML front matter + body).
* :mod:`celebref.publish.privacy` — local paths reduced to file names; the guard that refuses a folder still
  carrying a local path, the home folder or the user name.
* :mod:`celebref.publish.verify` — the folder loaded back with ``datasets.load_dataset`` and compared with the
  dataset and test sets it was made from.
* :mod:`celebref.publish.push` — upload with huggingface_hub: create the repo, skip files already on the Hub with
  the same content, commit in batches with retries (a rerun resumes), README last, gating settings.
"""

from celebref.publish.builder import PublishInputError, PublishResult, build_folder  # noqa: F401
from celebref.publish.push import PublishError, push_folder, redact, resolve_token  # noqa: F401
