"""What a driver starts ends with it: a watchdog that outlives the driver just long enough to end its processes.

Ray's own fate sharing ends the GCS and the raylet when the driver that started them dies, but
not everything: its dashboard and runtime-env agents live on, and workers take seconds to notice.
Before the local Ray starts, the driver puts a token in its environment (`DRMFM_WATCH`), which
the processes of that Ray inherit, and takes it out again once Ray is up, so that nothing else
the driver starts carries it. The watchdog runs in a session of its own (a kill of the driver's
process group spares it) with a pipe on its stdin. Every half second it notes the processes that
carry the token and their descendants (Ray's agents rewrite their environment with their process
titles, but are children of the raylet), each with its start time, so that a pid reused later is
never hit. When the pipe closes (the driver ended, however it ended) it kills every noted process
that is still the one it noted, and every process that carries the token, and exits.

    python -m pipeline.watchdog TOKEN
"""

from __future__ import annotations

import os
import select
import signal
import sys
import uuid
from pathlib import Path

from pipeline.host import start_ticks

VARIABLE = "DRMFM_WATCH"
_POLL_SECONDS = 0.5


def _processes() -> dict[int, int]:
    """pid -> parent pid of every process (this one aside), from /proc."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                out[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return out


def marked(token: str) -> set[int]:
    """The processes that carry the token, and their descendants."""
    mark = f"{VARIABLE}={token}".encode()
    parents = _processes()
    found = set()
    for pid in parents:
        try:
            if mark in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.add(pid)
        except OSError:
            continue
    frontier = set(found)
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def watch(token: str) -> None:
    """Note the marked processes until stdin closes, then end them."""
    noted: dict[int, int | None] = {}
    while True:
        noted.update({pid: start_ticks(pid) for pid in marked(token) if pid not in noted})
        ready, _, _ = select.select([sys.stdin], [], [], _POLL_SECONDS)
        if ready and not os.read(sys.stdin.fileno(), 1024):
            break  # the pipe closed: the driver is gone
    for pid in marked(token):
        noted.setdefault(pid, start_ticks(pid))
    for pid, started in noted.items():
        if started is not None and start_ticks(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class Guard:
    """The watchdog of this process's local Ray (see the module)."""

    def __init__(self):
        import subprocess

        self.token = uuid.uuid4().hex
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.watchdog", self.token],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, cwd=Path(__file__).resolve().parent.parent,
        )

    def mark(self) -> None:
        """What this process starts from now on carries the token (call before Ray starts)."""
        os.environ[VARIABLE] = self.token

    def unmark(self) -> None:
        """…and from now on does not (call once Ray is up)."""
        os.environ.pop(VARIABLE, None)

    def close(self) -> None:
        """End what is left of the marked processes now (after `ray.shutdown()`), and the watchdog."""
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except Exception:  # noqa: BLE001 - it ends with this process in any case
            pass


if __name__ == "__main__":
    watch(sys.argv[1])
