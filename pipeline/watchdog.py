"""What a driver starts ends with it: a watchdog that outlives the driver just long enough to end its processes.

Ray's own fate sharing ends the GCS and the raylet when the driver that started them dies, but
not everything: its dashboard and runtime-env agents live on, and workers take seconds to notice.
The driver starts this watchdog in a session of its own (so a kill of the driver's process group
spares it), with a pipe on its stdin. While the driver lives, the watchdog notes the driver's
descendants every half second (their pids with their start times, so a reused pid is never hit).
When the pipe closes (the driver ended, however it ended), it kills every noted process that is
still the one it noted, and exits.

    python -m pipeline.watchdog DRIVER_PID
"""

from __future__ import annotations

import os
import select
import signal
import sys
from pathlib import Path

from pipeline.host import start_ticks

_POLL_SECONDS = 0.5


def descendants(root: int) -> dict[int, int | None]:
    """pid -> start time of every descendant of `root` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    found.discard(os.getpid())
    return {pid: start_ticks(pid) for pid in found}


def watch(driver: int) -> None:
    noted: dict[int, int | None] = {}
    while True:
        noted.update(descendants(driver))
        ready, _, _ = select.select([sys.stdin], [], [], _POLL_SECONDS)
        if ready and not os.read(sys.stdin.fileno(), 1024):
            break  # the pipe closed: the driver is gone
    for pid, started in noted.items():
        if started is not None and start_ticks(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def start() -> object:
    """Start the watchdog of this process; keep the returned object alive while the driver runs."""
    import subprocess

    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.watchdog", str(os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, cwd=Path(__file__).resolve().parent.parent,
    )


if __name__ == "__main__":
    watch(int(sys.argv[1]))
