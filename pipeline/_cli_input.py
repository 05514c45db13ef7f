"""What the CLI checks before any work: each check raises `BadInput`, which `drmfm` prints as one
line naming the field and what is allowed, and exits 2."""

from __future__ import annotations

import os
from pathlib import Path

from drm.config import DEVICES, TrainConfig


class BadInput(Exception):
    """Input outside what is allowed: the CLI prints it as one line and exits 2."""


def home_dir(home: Path | None) -> Path:
    """--home, else $DRMFM_HOME, else ./drmfm-home (a folder, or nothing yet)."""
    path = Path(home or os.environ.get("DRMFM_HOME") or "drmfm-home")
    check_folder("home", path)
    return path


def check_folder(field: str, path: Path) -> None:
    """A folder, or a path whose nearest existing ancestor is a folder (it is made when written)."""
    for place in (path, *path.absolute().parents):
        try:
            exists = place.exists()
        except OSError as e:  # a folder above it that this user may not enter
            raise BadInput(f"{field}: {str(path)!r} cannot be reached ({e.strerror or type(e).__name__} at {str(place)!r}); "
                           "allowed: a folder this user can write") from None
        if exists:
            if not place.is_dir():
                where = "is a file" if place == path else f"is under {str(place)!r}, a file"
                raise BadInput(f"{field}: {str(path)!r} {where}; allowed: a folder (made if missing)")
            return


def parse_fourier(value: str) -> int | None:
    if value.strip().lower() == "none":
        return None
    try:
        i = int(value)
    except ValueError:
        raise BadInput(f"fourier: {value!r} is not allowed; allowed: an integer >= 0 or 'none'") from None
    if i < 0:
        raise BadInput(f"fourier: {value!r} is not allowed; allowed: an integer >= 0 or 'none'")
    return i


def parse_seeds(seeds: int | None, seed_list: str | None) -> list[int]:
    if seeds is not None and seed_list is not None:
        raise BadInput("seeds: give --seeds S or --seed-list, not both")
    if seed_list is not None:
        try:
            out = [int(s) for s in seed_list.split(",") if s.strip()]
        except ValueError:
            raise BadInput(f"seed-list: {seed_list!r} is not allowed; allowed: integers >= 0, comma-separated") from None
        if not out or min(out) < 0 or len(set(out)) != len(out):
            raise BadInput(f"seed-list: {seed_list!r} is not allowed; allowed: distinct integers >= 0, comma-separated")
        return out
    n = 1 if seeds is None else seeds
    if n < 1:
        raise BadInput(f"seeds: {n} is not allowed; allowed: an integer >= 1")
    return list(range(n))


def check_bench(device: str, dtype: str, seconds: float) -> None:
    """`drmfm bench`'s options, before anything is timed."""
    check_device(device)
    if dtype not in ("float32", "float64"):
        raise BadInput(f"dtype: unknown {dtype!r}; allowed: float32, float64")
    if seconds <= 0:
        raise BadInput(f"seconds: {seconds} is not allowed; allowed: a number > 0")


def check_device(device: str) -> None:
    if device not in DEVICES:
        raise BadInput(f"device: unknown {device!r}; allowed: {', '.join(DEVICES)}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise BadInput("device: cuda is not available on this machine; allowed here: auto, cpu")


def check_train_memory(config: TrainConfig, members: int, device: str) -> None:
    from pipeline.resources import check_step_memory

    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    check_step_memory(config, members, device, "width/seeds")


def check_ntk_memory(problem: str, depth: int, width: int, fourier: int | None, points: int) -> None:
    """The Jacobians (2N × P) and the Gram matrix (2N × 2N), float64, against free memory."""
    from drm.memory import parameters
    from pipeline.resources import free_memory

    P = parameters(TrainConfig(problem=problem, depth=depth, width=width, fourier=fourier))
    need = 8 * (2 * points * P * 2 + 3 * (2 * points) ** 2)
    free = free_memory("cpu")
    if free is not None and need > free:
        raise BadInput(
            f"points: {points} points of a depth-{depth}, width-{width} net need ≈ {need / 1024**3:.1f} GiB; "
            f"this machine has {free / 1024**3:.1f} GiB free; allowed: fewer points or a narrower net"
        )
