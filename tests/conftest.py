"""Shared fixtures. Tests check numbers against independent truths (closed forms, autograd, references)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(1234)
    yield


