"""One driver per sweep: the lease, on a real folder, with real processes (no Ray needed)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from drm.storage import Storage
from pipeline.host import Process, start_ticks
from pipeline.lease import Lease, LeaseHeld
from tests.helpers import spawn

HOLD = """
import sys, time
from pipeline.lease import Lease
from drm.storage import Storage
Lease(Storage(sys.argv[1]), "s").acquire()
print("held", flush=True)
time.sleep(600)
"""


def _write_holder(root: Storage, **fields) -> None:
    holder = {"token": "someone", "host": socket.gethostname(), "pid": os.getpid(), "started": start_ticks(os.getpid()),
              "since": "2026-01-01T00:00:00+00:00", "renewed": time.time(), **fields}
    root.write_text(json.dumps(holder), "leases", "s.json")


def test_a_second_driver_is_refused_with_the_holder_named(tmp_path):
    root = Storage(tmp_path)
    lease = Lease(root, "s")
    lease.acquire()
    with pytest.raises(LeaseHeld) as refused:
        Lease(root, "s").acquire()
    lease.release()
    line = str(refused.value)
    assert line.startswith("lease: sweep 's' is held by a driver on host") and f"(pid {os.getpid()})" in line and "since" in line
    assert not root.exists("leases", "s.json")  # released at the end
    Lease(root, "s").acquire()  # and free again


def test_a_lease_whose_holder_died_is_taken_over_at_once(tmp_path):
    holder = spawn([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LeaseHeld):
            Lease(Storage(tmp_path), "s").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    lease = Lease(Storage(tmp_path), "s")
    lease.acquire()
    assert lease.took_over is not None and lease.took_over.pid == holder.pid


def test_a_reused_pid_does_not_keep_a_dead_drivers_lease(tmp_path):
    root = Storage(tmp_path)
    _write_holder(root, started=(start_ticks(os.getpid()) or 0) + 12345)  # this pid, another process's start
    lease = Lease(root, "s")
    lease.acquire()
    assert lease.took_over is not None


def test_a_holder_on_another_host_keeps_the_lease_until_its_ttl_passes(tmp_path):
    root = Storage(tmp_path)
    _write_holder(root, host="elsewhere", pid=1, renewed=time.time() - 5)
    with pytest.raises(LeaseHeld, match="host elsewhere"):
        Lease(root, "s", ttl=60).acquire()
    _write_holder(root, host="elsewhere", pid=1, renewed=time.time() - 61)
    lease = Lease(root, "s", ttl=60)
    lease.acquire()
    assert lease.took_over.host == "elsewhere"


def test_the_holder_renews_and_notices_when_it_lost_the_lease(tmp_path):
    root = Storage(tmp_path)
    lease = Lease(root, "s", renew_every=0.1)
    lost = []
    lease.on_lost = lost.append
    lease.acquire()
    lease.keep_renewed()
    first = json.loads(root.read_bytes("leases", "s.json"))["renewed"]
    time.sleep(0.5)
    assert json.loads(root.read_bytes("leases", "s.json"))["renewed"] > first  # renewed
    _write_holder(root, token="thief", host="elsewhere", pid=1)
    time.sleep(0.5)
    lease.release()
    assert lost and "elsewhere" in lost[0] and lease.lost
    assert json.loads(root.read_bytes("leases", "s.json"))["token"] == "thief"  # release left the thief's lease


def _race(folder: str, barrier, wins) -> None:
    barrier.wait()
    try:
        Lease(Storage(folder), "s").acquire()
        wins.put(os.getpid())
        time.sleep(2)  # hold it while the others try
    except LeaseHeld:
        pass


def _winners(folder, racer, n: int = 6) -> list[int]:
    """The pids of the `n` racers (forked, released at one barrier) that took the lease."""
    context = multiprocessing.get_context("fork")
    barrier, wins = context.Barrier(n), context.Queue()
    racers = [context.Process(target=racer, args=(str(folder), barrier, wins)) for _ in range(n)]
    for r in racers:
        r.start()
    for r in racers:
        r.join(30)
    won = []
    while not wins.empty():
        won.append(wins.get())
    return won


def test_drivers_started_at_the_same_moment_get_one_lease(tmp_path):
    assert len(_winners(tmp_path, _race)) == 1


def _race_without_hard_links(folder: str, barrier, wins) -> None:
    def refuse(source, target):
        raise PermissionError(1, "Operation not permitted")  # what a FUSE or SMB mount answers

    os.link = refuse  # this racer's process only (forked)
    _race(folder, barrier, wins)


def test_a_folder_without_hard_links_still_gives_one_lease(tmp_path):
    assert len(_winners(tmp_path, _race_without_hard_links)) == 1
    assert [p.name for p in (tmp_path / "leases").iterdir()] == ["s.json"]  # no temporary file left beside it


def test_drivers_taking_over_one_stale_lease_at_the_same_moment_get_one_lease(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_holder(Storage(tmp_path), pid=dead.pid, started=None)  # its holder is gone
    assert len(_winners(tmp_path, _race)) == 1
    assert not list(tmp_path.glob("leases/*.stale"))  # the stale lease moved aside is gone


def test_a_holder_whose_renewals_keep_failing_says_it_may_have_lost_the_lease(tmp_path):
    root = Storage(tmp_path)
    lease = Lease(root, "s", ttl=0.6, renew_every=0.1)
    lost = []
    lease.on_lost = lost.append
    lease.acquire()
    original = root.write_bytes

    def refuse(data, *parts):
        raise OSError(28, "No space left on device")

    root.write_bytes = refuse  # every renewal now fails
    lease.keep_renewed()
    time.sleep(1.0)
    root.write_bytes = original
    lease.release()
    assert lost and "could not be renewed" in lost[0] and "No space left on device" in lost[0]


def test_process_identity_tells_a_live_process_from_a_dead_one():
    assert Process.current().alive()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not Process(socket.gethostname(), dead.pid, None).alive()
