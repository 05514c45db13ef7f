"""How much memory one training step of a packed model needs, from its shape alone.

A step of K members holds, per hidden layer, the layer's input rows h, its pre-activations z and
the activation's saved derivatives (drm/streams.py), and, during the backward, a few (K, T, H)
buffers more; beside them the parameters with their gradients and Adam's two moments. With
T = N + Nb + (d + s)·N stream rows (N interior and Nb boundary points, d first-derivative streams,
s = 1 when ε > 0 adds the second-derivative stream) and P parameters per member:

    bytes ≈ e · [4·K·P + A·L·(2·T·H + 4·N·H) + 3·A·T·H]       (e = 4 in float32, 8 in float64)

with K = A, every member's activations alive at once (a GPU); on a CPU the trainer runs members in
cache-sized chunks, and only a chunk's A members hold activations: the parameter term keeps K,
the activation terms take A. The eager ReLU writes its output over z, so each layer holds one
(A, T, H) tensor fewer; the formula does not subtract it, and errs on the safe side there. It is
what a command compares with the device's free memory before it starts work it could not finish.
"""

from __future__ import annotations

from drm.config import TrainConfig
from drm.features import feature_count
from drm.problems import get_problem


def parameters(config: TrainConfig) -> int:
    """P: one member's weights and biases."""
    c = config.resolve()
    dim = get_problem(c.problem).dim
    inputs = feature_count(dim, "identity" if c.fourier is None else c.fourier_map)
    sizes = [inputs, *([c.width] * c.depth), 1]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def step_bytes(config: TrainConfig, members: int, at_once: int | None = None) -> int:
    """The memory one step of `members` members of `config` needs (the module's formula), when
    `at_once` of them (default all) hold their activations together (a CPU runs members in chunks)."""
    c = config.resolve()
    dim = get_problem(c.problem).dim
    element = 8 if c.dtype == "float64" else 4
    N, Nb, H, L = c.batch, c.boundary_batch, c.width, c.depth
    T = N + Nb + (dim + (1 if c.needs_u2 else 0)) * N
    K, A = members, members if at_once is None else at_once
    return element * (4 * K * parameters(c) + A * L * (2 * T * H + 4 * N * H) + 3 * A * T * H)
