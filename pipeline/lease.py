"""One driver per sweep: a lease file that the driver takes before anything else and renews while it runs.

The lease is `leases/<sweep>.json` in the home (or the --storage root), beside `ray/` and
`results/`. It names its holder (host, pid, the process's start time, since when) and the time of
its last renewal. A second driver of the same sweep finds it and stops with exit 2, naming the
holder. A lease is stale, and is taken over, when
- its holder ran on this host and that process is gone (at once: the pid is checked, with its
  start time, so a reused pid does not keep a dead driver's lease), or
- its holder ran on another host and it has not been renewed for `TTL_SECONDS` (the holder renews
  it every `RENEW_SECONDS`; the hosts' clocks must agree to well within the TTL, as NTP keeps them).

On a folder (local or NFS) taking a lease is atomic (a hard link that fails if the name is taken),
and so is taking over a stale one (a rename that only one driver can win). On an object store
pyarrow offers no conditional write: the driver writes, waits, and reads back, which closes all
but a window of about a second between two drivers started at the same moment (README).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass

from drm.storage import Storage, first_line
from pipeline.host import Process
from pipeline.spec import SpecError

TTL_SECONDS = 60.0
RENEW_SECONDS = 10.0
_SETTLE_SECONDS = 1.0  # object stores: how long a write is given to win before it is read back


class LeaseHeld(SpecError):
    """Another driver holds the sweep: exit 2, one line naming it."""


@dataclass(frozen=True)
class Holder:
    token: str
    host: str
    pid: int
    started: int | None  # the holder's start time (clock ticks since boot)
    since: str  # ISO time the lease was taken
    renewed: float  # seconds since the epoch of the last renewal
    space: str | None = None  # the holder's pid namespace and boot (pipeline.host.pid_space)

    def describe(self) -> str:
        return f"a driver on host {self.host} (pid {self.pid}) since {self.since}"

    def stale(self, ttl: float, now: float) -> bool:
        process = Process(self.host, self.pid, self.started, self.space)
        if process.here():
            return not process.alive()
        return now - self.renewed > ttl

    @staticmethod
    def parse(data: bytes) -> Holder | None:
        """The holder a lease file names, None if it is not one (corrupt, or another program's)."""
        try:
            fields = json.loads(data)
            holder = Holder(**fields)
            ok = isinstance(holder.token, str) and isinstance(holder.host, str) and isinstance(holder.pid, int)
            ok = ok and isinstance(holder.renewed, (int, float)) and (holder.started is None or isinstance(holder.started, int))
            return holder if ok else None
        except (ValueError, TypeError):
            return None


class Lease:
    """The lease of sweep `name` under `root`: `acquire`, then `keep_renewed` while the driver runs, `release`."""

    def __init__(self, root: Storage, name: str, ttl: float = TTL_SECONDS, renew_every: float = RENEW_SECONDS):
        self.root = root
        self.name = name
        self.ttl = ttl
        self.renew_every = renew_every
        self.parts = ("leases", f"{name}.json")
        self.token = uuid.uuid4().hex
        self.lost: str | None = None  # why this driver no longer holds it, if it lost it
        self.on_lost = None  # called with `lost` when a renewal finds the lease taken
        self.took_over: Holder | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # Reading
    def holder(self) -> Holder | None:
        """The current holder; None if there is no lease. A lease that cannot be read is reported
        as a holder with an empty token (stale once its file is older than the TTL)."""
        try:
            data = self.root.read_bytes(*self.parts)
        except FileNotFoundError:
            return None
        holder = Holder.parse(data)
        if holder is None:
            modified = self.root.modified(*self.parts) or 0.0
            return Holder("", "?", -1, None, "?", modified)
        return holder

    # Taking and giving back
    def acquire(self) -> None:
        """Take the lease, or raise LeaseHeld naming its live holder."""
        for _ in range(5):  # each round either takes it, or finds a live holder, or lost a race
            if self._create():
                return
            current = self.holder()
            if current is None:
                continue  # released between our two looks
            if current.token == self.token:
                return  # ours after all (an NFS link retried after it had succeeded reports EEXIST)
            if not self._is_stale(current):
                raise LeaseHeld("lease", f"sweep {self.name!r} is held by {current.describe()}; allowed: wait for it to end, or stop that driver")
            if self._break(current):
                self.took_over = current
        raise LeaseHeld("lease", f"sweep {self.name!r}: another driver is taking its lease at the same moment; allowed: one driver per sweep")

    def keep_renewed(self) -> None:
        """Renew the lease in the background until `release`."""
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{self.name}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Give the lease back (if still ours). A storage that refuses now leaves it to go stale:
        a dead pid on this host, or the TTL elsewhere, lets the next driver take it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            current = self.holder()
            if current is not None and current.token == self.token:
                self.root.remove(*self.parts)
        except OSError:
            pass

    # Renewing
    def renew(self) -> bool:
        """Renew if still ours; False (and `lost` says why) if another driver holds it now."""
        current = self.holder()
        if current is None or current.token != self.token:
            self.lost = f"the lease of sweep {self.name!r} was taken by {current.describe() if current else 'no one (it was removed)'}"
            return False
        self.root.write_bytes(self._content(since=current.since), *self.parts)
        return True

    def _renew_loop(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.renew_every):
            try:
                if self.renew():
                    last = time.monotonic()
                    continue
            except OSError as e:  # a storage hiccup: the next renewal tries again, while the TTL allows
                if time.monotonic() - last < self.ttl - 2 * self.renew_every:
                    continue
                self.lost = f"the lease of sweep {self.name!r} could not be renewed for {time.monotonic() - last:.0f} s ({first_line(e)})"
            self._lose()
            return

    def _lose(self) -> None:
        """Tell the driver (once) that another driver may hold the sweep now."""
        if self.on_lost is not None:
            try:
                self.on_lost(self.lost)
            except Exception:  # noqa: BLE001 - the driver reads `lost` at its end anyway
                pass

    # Internals
    def _content(self, since: str | None = None) -> bytes:
        me = Process.current()
        holder = Holder(
            token=self.token, host=me.host, pid=me.pid, started=me.started,
            since=since or dt.datetime.now().astimezone().isoformat(timespec="seconds"), renewed=time.time(), space=me.space,
        )
        return json.dumps(asdict(holder)).encode()

    def _is_stale(self, holder: Holder) -> bool:
        return holder.token != self.token and holder.stale(self.ttl, time.time())

    def _create(self) -> bool:
        if not self.root.create(self._content(), *self.parts):
            return False
        if self.root.local:
            return True
        time.sleep(_SETTLE_SECONDS)  # an object store: a second writer may have overwritten ours
        current = self.holder()
        return current is not None and current.token == self.token

    def _break(self, stale: Holder) -> bool:
        """Remove a stale lease, unless it changed since it was judged stale. True if removed."""
        if not self.root.local:
            self.root.remove(*self.parts)
            return True
        path = self.root.path(*self.parts)
        aside = f"{path}.{self.token}.stale"
        try:
            os.rename(path, aside)  # only one driver moves a given file
        except FileNotFoundError:
            return False
        try:
            with open(aside, "rb") as f:
                moved = Holder.parse(f.read())
            if moved is not None and (moved.token, moved.renewed) != (stale.token, stale.renewed):
                try:  # it was renewed or retaken in between: put it back
                    os.link(aside, path)
                except FileExistsError:
                    pass
                return False
        finally:
            os.unlink(aside)
        return True  # the lease it judged stale (or the unreadable one it judged by) is gone
