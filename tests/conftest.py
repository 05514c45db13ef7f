"""Shared fixtures. Tests check numbers against independent truths (closed forms, autograd, references)."""

from __future__ import annotations

import pytest
import torch

from drm.config import TrainConfig


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(1234)
    yield


def small(problem: str, **overrides) -> TrainConfig:
    """A small configuration of `problem` for exact-comparison tests (float64, narrow, few points)."""
    base = {"problem": problem, "width": 24, "depth": 3, "dtype": "float64", "epochs": 200}
    if problem == "twin_branching":
        base.update(batch=48, boundary_batch=40)
    else:
        base.update(batch=32)
    base.update(overrides)
    return TrainConfig(**base).resolve()
