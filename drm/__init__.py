"""drm: the Deep Ritz method with Fourier feature maps, trained as packed multi-seed models.

    >>> import drm
    >>> config = drm.TrainConfig(problem="double_well", depth=5, fourier=2, epochs=2000)
    >>> trainer = drm.PackedTrainer(config, seeds=[0, 1, 2, 3])
    >>> trainer.run()
    >>> drm.measure(trainer.model, config).transitions
    array([...])

Names are loaded on first use, so that validating a configuration does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Activation": "drm.activations",
    "ConfigError": "drm.config",
    "TrainConfig": "drm.config",
    "FourierMap": "drm.features",
    "Measurements": "drm.measurement",
    "measure": "drm.measurement",
    "count_bands": "drm.counts",
    "count_transitions": "drm.counts",
    "Jet": "drm.network",
    "PackedMLP": "drm.network",
    "Metric": "drm.metrics",
    "Pack": "drm.pack",
    "PROBLEMS": "drm.problems",
    "register_metric": "drm.metrics",
    "register_problem": "drm.problems",
    "Problem": "drm.problems",
    "DoubleWell": "drm.problems",
    "DoubleWellU2": "drm.problems",
    "TwinBranching": "drm.problems",
    "get_problem": "drm.problems",
    "ReferenceNet": "drm.reference",
    "ReferenceTrainer": "drm.reference",
    "Curves": "drm.train",
    "PackedTrainer": "drm.train",
    "build_model": "drm.train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'drm' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
