"""Shared fixtures. Tests check numbers against independent truths (closed forms, autograd, references)."""

from __future__ import annotations

import os

import pytest
import torch

from drm.classical.judge import CACHE_VARIABLE
from tests.helpers import reap


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(1234)
    yield


@pytest.fixture(scope="session", autouse=True)
def _one_cache_of_classical_references(tmp_path_factory):
    """Every test's home shares one cache of references (each (problem, ε) solved once per session, as a
    user's $DRMFM_REFERENCES would), and every command a test starts inherits it. Tests of the default,
    HOME/references, unset it."""
    os.environ[CACHE_VARIABLE] = str(tmp_path_factory.mktemp("references"))
    yield
    os.environ.pop(CACHE_VARIABLE, None)


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test():
    yield
    reap()
