"""The stream layer's elementwise passes fused by torch.compile (issue 17).

Eager, a hidden layer's activation and its derivative streams are a dozen passes over (K, T, H)
tensors (drm/streams.py): σ and its derivatives, the products of each stream, the saved
derivatives read back in the backward. Compiled, the forward is one kernel that reads z and writes
the output, and the backward one kernel that reads g and z and writes ∂L/∂z and ∂L/∂b, recomputing
σ', σ'', σ''' from z instead of saving them; z comes without its bias, which both kernels add to the
value rows themselves (measured on this 2-core Xeon, one 2D chunk of 8 members:
14 ms eager, 5.8 ms fused, forward and backward of one layer). The formulas are those of
drm/streams.py, written without `out=` so that the compiler may fuse them; the matrix products
stay where they are (oneDNN's).

Compiled once per (activation, layout, width, device, dtype) in a process, each into a cache of its
own, with the member axis dynamic (any chunk size shares one kernel; a chunk of 1 is its own). Where
compiling fails (no C++ compiler, an unsupported device), the eager passes are used and `why` says
so; a failed shape is not tried again in that process.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from drm.activations import Activation
from drm.streams import StreamLayout

_RECOMPILE_LIMIT = 8  # compiled graphs per layout's function: chunks of any size, chunks of 1 (and room to spare)


def forward_passes(z: Tensor, b: Tensor, activation: Activation, layout: StreamLayout) -> Tensor:
    """σ on every stream of z (K, T, H), the bias b (K, 1, H) added to its value rows here: the output (K, T, H)."""
    N, d, a = layout.n_interior, layout.dim, layout.second_axis
    z_value, z_first, z_second = layout.split(z)
    z_value = z_value + b  # in the same kernel: no pass of its own over z
    z0 = z_value[:, :N]
    if activation.name == "relu":
        on = z0 > 0
        parts = [z_value.clamp_min(0.0), *(torch.where(on, z_first[:, j], 0.0) for j in range(d))]
        if z_second is not None:
            parts.append(torch.where(on, z_second, 0.0))
        return torch.cat(parts, dim=1)
    s = activation.derivatives(z0, 2)  # σ, σ', σ'' on the interior rows, each (K, N, H)
    parts = [s[0]]
    if layout.n_value > N:
        parts.append(activation.derivatives(z_value[:, N:], 0)[0])
    parts.extend(z_first[:, j] * s[1] for j in range(d))
    if z_second is not None:
        parts.append(z_second * s[1] + s[2] * z_first[:, a].square())
    return torch.cat(parts, dim=1)


def backward_passes(g: Tensor, z: Tensor, b: Tensor, activation: Activation, layout: StreamLayout) -> tuple[Tensor, Tensor]:
    """∂L/∂z (K, T, H) and ∂L/∂b (K, 1, H) from g = ∂L/∂out, the pre-activations z without their bias,
    and b (drm/streams.py's formulas; ∂L/∂b, the sum of ∂L/∂z over the value rows, in the same kernel)."""
    N, d, a = layout.n_interior, layout.dim, layout.second_axis
    z_value, z_first, z_second = layout.split(z)
    z_value = z_value + b
    g_value, g_first, g_second = layout.split(g)
    if activation.name == "relu":
        on_value = z_value > 0
        on = on_value[:, :N]
        d_value = torch.where(on_value, g_value, 0.0)
        parts = [d_value, *(torch.where(on, g_first[:, j], 0.0) for j in range(d))]
        if g_second is not None:
            parts.append(torch.where(on, g_second, 0.0))
        return torch.cat(parts, dim=1), d_value.sum(dim=1, keepdim=True)
    s = activation.derivatives(z_value[:, :N], 2 if a is None else 3, value=False)
    s1, s2 = s[1], s[2]
    acc = g_first[:, 0] * z_first[:, 0]  # Σ_j g_j z_j (+ g_2 z_2), then one product with σ''
    for j in range(1, d):
        acc = acc + g_first[:, j] * z_first[:, j]
    d_first = [g_first[:, j] * s1 for j in range(d)]
    d_interior = g_value[:, :N] * s1
    if g_second is not None:
        z_a = z_first[:, a]
        d_first[a] = d_first[a] + 2.0 * g_second * s2 * z_a
        acc = acc + g_second * z_second
        d_interior = d_interior + g_second * (s[3] * z_a * z_a)
    d_value = [d_interior + acc * s2]
    if layout.n_value > N:
        d_value.append(g_value[:, N:] * activation.derivatives(z_value[:, N:], 1, value=False)[1])
    parts = [*d_value, *d_first]
    if g_second is not None:
        parts.append(g_second * s1)
    return torch.cat(parts, dim=1), sum(v.sum(dim=1, keepdim=True) for v in d_value)


@dataclass(frozen=True)
class FusedPasses:
    """The compiled forward and backward of one layout and activation (drm.streams.hidden_layer takes them)."""

    layout: StreamLayout
    forward: Callable[[Tensor, Tensor], Tensor]  # (z, b) -> out
    backward: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]  # (g, z, b) -> (∂L/∂z, ∂L/∂b)


_COMPILED: dict[tuple, FusedPasses] = {}
_FAILED: dict[tuple, str] = {}  # why compiling failed, by key: tried once a process


def _own_code(fn: Callable, name: str) -> Callable:
    """`fn` with a code object of its own. Dynamo keeps a function's compiled graphs, and counts its
    recompile limit, on the code object; every layout's passes are one closure's code, so without
    this all layouts of a process would share one cache, and enough of them would exhaust it."""
    code = fn.__code__.replace(co_name=name, co_qualname=name)
    return types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)


def _dynamic_members(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def call(*tensors: Tensor) -> Tensor:
        for t in tensors:
            torch._dynamo.maybe_mark_dynamic(t, 0)  # chunks of any size share a kernel
        return fn(*tensors)

    return call


def fused_passes(
    activation: Activation, layout: StreamLayout, width: int, device: torch.device, dtype: torch.dtype,
    say: Callable[[str], None] | None = None,
) -> tuple[FusedPasses | None, str]:
    """The compiled passes for this layer shape (compiled and tried now, on zeros), or None and why not.
    `say` is told when a compile starts (seconds, up to a minute where inductor's cache is cold)."""
    key = (activation, layout, width, device.type, dtype)
    if key in _COMPILED:
        return _COMPILED[key], "fused (torch.compile)"
    if key in _FAILED:
        return None, _FAILED[key]
    if say is not None:
        say("compiling the elementwise passes")
    import torch._dynamo
    import torch._inductor.config

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, _RECOMPILE_LIMIT)  # per code object
    # Two small kernels: compiled in this process, not by a pool of compile workers that a Ray
    # trial's end would orphan.
    torch._inductor.config.compile_threads = 1
    # The kernels' threads as torch's at each call, not fixed at compile time (inductor fixes them
    # when they differ from the machine's cores, as in a Ray trial of 2 CPUs on a larger node): the
    # step's threads are tuned (drm.autotune.threads), and the fused passes must follow them.
    torch._inductor.config.cpp.dynamic_threads = True

    def forward(z: Tensor, b: Tensor) -> Tensor:
        return forward_passes(z, b, activation, layout)

    def backward(g: Tensor, z: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        return backward_passes(g, z, b, activation, layout)

    n = len(_COMPILED) + len(_FAILED)
    passes = FusedPasses(layout, _dynamic_members(torch.compile(_own_code(forward, f"fused_forward_{n}"), fullgraph=True)),
                         _dynamic_members(torch.compile(_own_code(backward, f"fused_backward_{n}"), fullgraph=True)))
    probe = torch.zeros((2, layout.rows, width), device=device, dtype=dtype)
    bias = torch.zeros((2, 1, width), device=device, dtype=dtype)
    try:
        with torch.no_grad():  # as the layer calls them (inside an autograd.Function): the same compiled graphs
            passes.backward(passes.forward(probe, bias), probe, bias)
    except Exception as e:  # noqa: BLE001 - any failure of the compiler leaves the eager passes, said
        said = " ".join(line.strip() for line in str(e).strip().splitlines()[:2]) or type(e).__name__  # the backend's line, then its cause
        _FAILED[key] = f"eager passes (torch.compile failed: {said[:200]})"
        return None, _FAILED[key]
    _COMPILED[key] = passes
    return passes, "fused (torch.compile)"
