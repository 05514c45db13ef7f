"""The packed step's matrix products alone, as fractions of the matmul peak measured in the same run.

    python benchmarks/products.py [--threads 2]

Hidden layers: z = h W (T, H) x (H, H), ∂L/∂W as hᵀg or gᵀh, ∂L/∂h = g Wᵀ, for chunks of 8 and 64
members and stream rows T = 256, 258 (the 1D bench: 128 + 2 + 128), 272, 1,000 and 3,000 (about the
2D bench's 2,800), operands hot in cache. The output layer (width 1): its forward and ∂L/∂W in the
forms a batched product can take (BENCHMARKS.md "The packed step on an AMD EPYC").
"""

from __future__ import annotations

import argparse
import time

import torch


def per_second(f, seconds: float = 0.4) -> float:
    for _ in range(3):
        f()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        f()
        n += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    torch.set_num_threads(parser.parse_args().threads)
    n, H = 1536, 128
    a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    peak = per_second(lambda: torch.mm(a, b, out=out)) * 2 * n**3 / 1e9
    print(f"matmul peak {peak:.0f} GFLOP/s")
    for K in (8, 64):
        for T in (256, 258, 272, 1000, 3000):
            h, w, g = torch.randn(K, T, H), torch.randn(K, H, H), torch.randn(K, T, H)
            gflop = 2 * K * T * H * H / 1e9
            shares = [per_second(f) * gflop / peak for f in (lambda: torch.bmm(h, w), lambda: torch.bmm(h.transpose(1, 2), g),
                                                              lambda: torch.bmm(g.transpose(1, 2), h), lambda: torch.bmm(g, w.transpose(1, 2)))]
            print(f"hidden K {K:2} T {T:4}: z = hW {shares[0]:4.0%}, dW = hTg {shares[1]:4.0%} (gTh {shares[2]:4.0%}), dh = gWT {shares[3]:4.0%}")
    K, T = 64, 258
    h, w, g = torch.randn(K, T, H), torch.randn(K, H, 1), torch.randn(K, T, 1)
    forms = {"u = (wT)(hT), (1, H) x (H, T)": lambda: torch.bmm(w.transpose(1, 2), h.transpose(1, 2)),
             "u = h w, (T, H) x (H, 1)": lambda: torch.bmm(h, w),
             "dW = hT g, (H, T) x (T, 1)": lambda: torch.bmm(h.transpose(1, 2), g),
             "dW = (gT h)T, (1, T) x (T, H)": lambda: torch.bmm(g.transpose(1, 2), h).transpose(1, 2)}
    for name, f in forms.items():
        print(f"output K {K} T {T}: {name:32} {1e3 / per_second(f):.3f} ms")


if __name__ == "__main__":
    main()
