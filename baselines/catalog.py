"""The model zoo as plain rows (for `bench models` and its ``--json``): what each registered model is and needs."""

from __future__ import annotations

import dataclasses

from baselines.registry import get_model_info, list_models


def model_rows(pattern: str = "*") -> list[dict]:
    """One plain row per registered model whose name matches the glob ``pattern``: name, description, paper,
    flags (needs/uses references, needs landmarks, trainable), default config, every config as a dict (tuples as
    lists) and the pretrained weights entries."""
    rows = []
    for name in list_models(pattern):
        info = get_model_info(name)
        cls = info.model_cls
        configs = {}
        for cname, c in info.configs.items():
            d = dataclasses.asdict(c) if dataclasses.is_dataclass(c) else dict(c)
            configs[cname] = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        rows.append({
            "name": name,
            "description": info.description,
            "paper": info.paper,
            "flags": {"needs_references": cls.needs_references, "uses_references": cls.uses_references,
                      "needs_landmarks": cls.needs_landmarks, "trainable": cls.trainable},
            "default_config": info.default_config,
            "configs": configs,
            "pretrained": dict(info.pretrained),
        })
    return rows
