"""`drmfm bench`'s shares of a step (pipeline.bench.step_shares), on steps whose make-up is known."""

from __future__ import annotations

import threading
import time

import torch

from pipeline.bench import step_shares

CPU = torch.device("cpu")


def test_a_step_of_products_is_counted_as_products():
    a, b, out = torch.randn(384, 384), torch.randn(384, 384), torch.empty(384, 384)
    matmul, other = step_shares(lambda: [torch.mm(a, b, out=out) for _ in range(20)], CPU)
    assert matmul > 0.8 and other < 0.05 and matmul + other <= 1.0


def test_compiled_elementwise_passes_count_as_elementwise():
    # drm._fused's passes run as a compiled graph, which has no aten operator inside: before they were
    # counted, a fused step showed a few percent of elementwise time where it spent a sixth.
    x = torch.randn(1 << 20)
    passes = torch.compile(lambda t: (t.sin() * t.cos()).exp(), dynamic=False)
    passes(x)
    matmul, other = step_shares(lambda: passes(x), CPU)
    assert matmul == 0.0 and other > 0.5 and other <= 1.0


def test_products_on_another_thread_are_not_the_steps():
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    stop = threading.Event()

    def elsewhere() -> None:
        while not stop.is_set():
            torch.mm(a, b)

    worker = threading.Thread(target=elsewhere)
    worker.start()
    try:
        matmul, other = step_shares(lambda: time.sleep(0.02), CPU)
    finally:
        stop.set()
        worker.join()
    assert matmul == 0.0 and other == 0.0
