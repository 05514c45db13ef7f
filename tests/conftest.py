"""Shared fixtures. Tests check numbers against independent truths (closed forms, autograd, references)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import reap


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(1234)
    yield




@pytest.fixture(autouse=True)
def _no_process_outlives_its_test():
    yield
    reap()
