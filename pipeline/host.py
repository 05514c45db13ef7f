"""Who a process is (host, pid, start time) and whether it is still there.

A pid alone is not an identity: after a crash the kernel may give it to another process. The
start time read from /proc (clock ticks since boot) tells the two apart, so a lease or an MLflow
run whose holder died is recognised even when its pid has been reused.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Process:
    """A process on a host: what leases and MLflow runs record of the driver that holds them."""

    host: str
    pid: int
    started: int | None  # start time in clock ticks since boot (Linux), None where unknown
    space: str | None = None  # the pid namespace and boot it belongs to (two containers may share a host name)

    @staticmethod
    def current() -> Process:
        pid = os.getpid()
        return Process(socket.gethostname(), pid, start_ticks(pid), pid_space())

    def here(self) -> bool:
        """Whether its pid can be checked from here: the same host and the same pid namespace."""
        return self.host == socket.gethostname() and (self.space is None or self.space == pid_space())

    def alive(self) -> bool:
        """On this host: whether the process still runs (a reused pid, or a zombie, does not count)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process: it exists
            pass
        stat = _stat(self.pid)
        if stat is None:
            return True  # no /proc here: the signal said it exists
        state, started = stat[0], int(stat[19])
        return state != "Z" and (self.started is None or started == self.started)

    def as_dict(self) -> dict:
        return {"host": self.host, "pid": self.pid, "started": self.started, "space": self.space}


def pid_space() -> str | None:
    """This process's pid namespace and the machine's boot, as one string (None without /proc)."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f"{f.read().strip()}:{namespace}"
    except OSError:
        return None


def start_ticks(pid: int) -> int | None:
    """The process's start time: field 22 of /proc/<pid>/stat (None without /proc)."""
    stat = _stat(pid)
    return int(stat[19]) if stat is not None else None


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces): state first."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
