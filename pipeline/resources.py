"""What the machine can give, checked before any work: CPUs and GPUs for a trial, memory for a step.

A request the local machine cannot meet would leave Ray Tune waiting forever, and a step that does
not fit in memory dies after minutes of setup; both are bad input, said in one line (exit 2).
"""

from __future__ import annotations

import os

from drm.config import ConfigError, TrainConfig
from drm.memory import step_bytes

_GiB = 1024**3


def free_memory(device: str) -> int | None:
    """Bytes free for a step on `device` ('cpu' or 'cuda'), None where it cannot be read."""
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_step_memory(config: TrainConfig, members: int, device: str, field: str) -> None:
    """ConfigError naming `field` if one step of `members` members of `config` cannot fit on `device`."""
    from drm.train import members_at_once

    need = step_bytes(config, members, members_at_once(config, members, device))
    free = free_memory(device)
    if free is not None and need > free:
        raise ConfigError(
            field,
            f"one step of {members} member(s) of width {config.width}, depth {config.depth}, {config.batch} points "
            f"needs ≈ {need / _GiB:.1f} GiB; {'this GPU' if device == 'cuda' else 'this machine'} has {free / _GiB:.1f} GiB free; "
            "allowed: fewer seeds, a narrower or shallower net, fewer points, or a device with more memory",
        )


def check_local_request(cpu: float, gpu: float) -> None:
    """A trial's request against this machine, for the embedded local Ray (ConfigError if it cannot be met)."""
    cpus = os.cpu_count() or 1
    if cpu > cpus:
        raise ConfigError("resources.cpu",
                          f"{cpu:g} CPUs per trial; this machine has {cpus}; allowed: at most {cpus}, or --address a cluster that has them")
    gpus = _gpu_count()  # without a GPU the local Ray drops the ask and trains on the CPU (INTERFACE.md)
    if 0 < gpus < gpu:
        raise ConfigError("resources.gpu", f"{gpu:g} GPUs per trial; this machine has {gpus}; allowed: at most {gpus}, or --address a cluster")


def _gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:  # CUDA stops at the first entry that is not a device ("-1": none)
        count = 0
        for entry in (d.strip() for d in visible.split(",")):
            if not entry or entry.startswith("-"):
                break
            count += 1
        return count
    return len([d for d in os.listdir("/dev") if d.startswith("nvidia") and d[6:].isdigit()]) if os.path.isdir("/dev") else 0
