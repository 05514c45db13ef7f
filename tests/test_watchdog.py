"""What a driver starts ends with it: the watchdog, with real processes (no Ray needed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import ROOT, spawn

SLEEP = "import time; time.sleep(120)"

# The driver's Ray stand-in: a marked child that starts an agent with an empty environment (as
# Ray's agents overwrite theirs) and a process whose parent exits at once (re-parented to init).
RAY = f"""
import json, subprocess, sys
agent = subprocess.Popen([sys.executable, "-c", {SLEEP!r}], env={{}})
spawn = "import subprocess, sys; print(subprocess.Popen([sys.executable, '-c', {SLEEP!r}], stdout=subprocess.DEVNULL).pid)"
middle = subprocess.Popen([sys.executable, "-c", spawn], stdout=subprocess.PIPE, text=True)
orphan = int(middle.communicate()[0])
print(json.dumps({{"agent": agent.pid, "orphan": orphan}}), flush=True)
import time; time.sleep(120)
"""

DRIVER = f"""
import json, subprocess, sys, time
from pipeline.watchdog import Guard
guard = Guard()
guard.mark()
ray = subprocess.Popen([sys.executable, "-c", {RAY!r}], stdout=subprocess.PIPE, text=True)
started = json.loads(ray.stdout.readline())
guard.unmark()
later = subprocess.Popen([sys.executable, "-c", {SLEEP!r}], start_new_session=True)  # not Ray's: must outlive the driver
print(json.dumps({{**started, "ray": ray.pid, "later": later.pid, "watchdog": guard.process.pid}}), flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_dead_driver_takes_its_ray_processes_with_it_and_nothing_else():
    driver = spawn([sys.executable, "-c", DRIVER], cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
    pids: dict[str, int] = {}
    try:
        pids = json.loads(driver.stdout.readline())
        time.sleep(1.5)  # the watchdog notes what is marked every half second
        assert all(_alive(pids[k]) for k in ("ray", "agent", "orphan", "later", "watchdog"))
        os.kill(driver.pid, signal.SIGKILL)  # the driver alone: its children are not signalled
        driver.wait(10)
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(pids[k]) for k in ("ray", "agent", "orphan", "watchdog")):
            time.sleep(0.2)
        assert not [k for k in ("ray", "agent", "orphan", "watchdog") if _alive(pids[k])]
        assert _alive(pids["later"])
    finally:
        driver.stdout.close()
        for pid in pids.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
