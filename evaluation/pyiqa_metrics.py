"""No-reference metrics computed by pyiqa itself (a wrapper of the reference package), only when their weights are
present: the registry path is passed as ``pretrained_model_path`` so pyiqa never tries a download.

- ``niqe_pyiqa``: pyiqa ``niqe`` (YIQ luma ×255 rounded, ``niqe_modelparameters.mat``; registry ``niqe-pyiqa``);
- ``musiq``: pyiqa ``musiq`` (MUSIQ trained on KonIQ-10k; registry ``musiq-koniq``; higher is better).

pyiqa is imported lazily (it takes seconds to import).
"""

from __future__ import annotations

import numpy as np
import torch

from evaluation.metrics import Batch, Column, Metric, register_metric


def _pyiqa_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyiqa")
    except PackageNotFoundError:  # pragma: no cover
        return "?"


class PyiqaMetric(Metric):
    kind = "no_reference"
    version = "1"

    def __init__(self, options=None, *, name: str, pyiqa_name: str, weights: str, higher_is_better: bool,
                 description: str, convention: str):
        super().__init__(options)
        self.name = name
        self.pyiqa_name = pyiqa_name
        self.needs = (weights,)
        self.columns = (Column(name, higher_is_better, description),)
        self._convention = convention
        self.reference = f"pyiqa {_pyiqa_version()} create_metric('{pyiqa_name}')"

    @property
    def convention(self) -> str:
        return f"pyiqa {_pyiqa_version()} '{self.pyiqa_name}': {self._convention}"

    def _setup(self, device: str) -> None:
        import pyiqa
        from celebref import weights as wreg

        path = wreg.require(self.needs[0])
        self._model = pyiqa.create_metric(self.pyiqa_name, device=torch.device(device),
                                          pretrained_model_path=str(path))

    @torch.no_grad()
    def compute(self, batch: Batch) -> dict[str, np.ndarray]:
        x = batch.tensor("pred").float() / 255.0
        vals = []
        for s in range(0, x.shape[0], self.options.batch_size):
            vals.append(self._model(x[s:s + self.options.batch_size]).reshape(-1).double().cpu())
        return {self.name: torch.cat(vals).numpy()}


register_metric("niqe_pyiqa", lambda o: PyiqaMetric(
    o, name="niqe_pyiqa", pyiqa_name="niqe", weights="niqe-pyiqa", higher_is_better=False,
    description="NIQE (pyiqa convention)",
    convention="Y (YIQ) x255 rounded, 96x96 blocks, niqe_modelparameters.mat"))
register_metric("musiq", lambda o: PyiqaMetric(
    o, name="musiq", pyiqa_name="musiq", weights="musiq-koniq", higher_is_better=True,
    description="MUSIQ (KonIQ-10k)", convention="multi-scale transformer, KonIQ-10k checkpoint, [0,1] RGB"))
