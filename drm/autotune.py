"""How many members of a packed model run their forward and backward together on a CPU, chosen by
timing the candidates on this machine, for this shape, at first use, and cached.

A CPU step runs its members in chunks: a chunk's activations (members × T rows × H) should stay in
the cache while its elementwise passes stream over them, yet the batched products want as many
members as possible. Which size wins depends on the CPU's caches and the configuration (measured:
12 MiB chunks reach half the matmul peak on an AMD EPYC and a third on an Intel Xeon with a 4 MiB
L2). So each candidate is timed on a throwaway copy of the trainer (the trainer's own state is not
touched), the fastest is kept if timing it against the rule's size in pairs confirms it (a quiet
moment of the machine can favour whichever size it timed), and the choice is cached in a JSON file
keyed by the CPU, threads, dtype and shape: a user may delete it, and the next run measures again.

Every choice gives the same result to rounding: members never interact, so a chunk is a partition
of independent work (`tests/test_autotune.py` holds float64 runs to 1e-10).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

FIXED_CHUNK_BYTES = 12 << 20  # the rule used when nothing is measured: a chunk's activations ≤ 12 MiB
MAX_CHUNK_BYTES = 256 << 20  # no candidate's activations exceed this (what the memory checks assume: `max_members`)
MIN_EPOCHS_TO_TUNE = 2_000  # a shorter run takes the rule (timing the candidates would cost it more than it gains)
_TIMED_SECONDS = 0.03  # per candidate and round
_ROUNDS = 2  # candidates are timed in turn, twice; each keeps its faster round
_PAIRED_ROUNDS = 6  # rounds of a paired comparison (a proposal against its default): each order thrice
_MARGIN = 0.03  # a size, the eager passes or a thread count replaces its default only when 3% faster (not timing noise)
CACHE_VERSION = 5  # an older version is measured again. 2: entries carry the step's threads; 3: "eager_faster" only
# where both passes were timed (2 said "fused": false also where none were offered); 4: eager against fused decided on
# the median of paired rounds; 5: every departure from a default (size, passes, threads) so confirmed, and recorded
Clock = Callable[[], float]  # what a timing reads: time.perf_counter (a test drives a clock of its own)
TUNING_FILE = "tuning.json"  # in the home: every measured choice, by key


@dataclass(frozen=True)
class Tuning:
    """Members per chunk and the step's threads, and how that was decided: "measured", "cached" or "fixed (why)"."""

    members: int
    source: str
    seconds_per_step: dict[int, float] = field(default_factory=dict)  # candidate chunk -> seconds a step, when measured
    threads: int | None = None  # torch's threads during a step; None: as the process has them
    seconds_per_step_by_threads: dict[int, float] = field(default_factory=dict)  # thread count -> seconds a step, when measured
    paired: dict[str, dict] = field(default_factory=dict)  # when measured: the proposals timed against their defaults (`Measurement.paired`)

    def chunks(self, K: int) -> list[slice]:
        return [slice(k, min(k + self.members, K)) for k in range(0, K, self.members)]

    def describe(self) -> str:
        threads = "" if self.threads is None else f", {self.threads} thread{'s' * (self.threads != 1)}"
        return f"{self.members} member{'s' * (self.members != 1)} a chunk{threads}, {self.source}"

    def as_dict(self) -> dict:
        return {"members_per_chunk": self.members, "threads": self.threads, "source": self.source,
                "seconds_per_step": _by_name(self.seconds_per_step), "seconds_per_step_by_threads": _by_name(self.seconds_per_step_by_threads),
                "paired": {what: dict(pair) for what, pair in self.paired.items()}}


def _by_name(seconds: dict[int, float]) -> dict[str, float]:
    """Seconds by candidate, keyed as JSON keys them (strings), in the candidates' order."""
    return {str(k): v for k, v in sorted(seconds.items())}


def fixed_members(per_member_bytes: int, K: int) -> int:
    """The rule's chunk: as many members as fit FIXED_CHUNK_BYTES, at least one, at most K."""
    return max(1, min(K, FIXED_CHUNK_BYTES // max(1, per_member_bytes)))


def max_members(per_member_bytes: int, K: int) -> int:
    """The largest chunk a measurement may choose: activations ≤ MAX_CHUNK_BYTES, at most K."""
    return max(1, min(K, MAX_CHUNK_BYTES // max(1, per_member_bytes)))


def candidates(largest: int, rule: int) -> list[int]:
    """Powers of two below `largest`, `largest` itself and the rule's size: ~log2 K + 2 sizes."""
    sizes = {largest, rule}
    size = 1
    while size < largest:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


def thread_candidates(available: int) -> list[int]:
    """The thread counts a step is timed with: powers of two below `available`, and `available` (the
    trial's cores). A small step can lose more to waking threads than it gains from them."""
    counts, n = {available}, 1
    while n < available:
        counts.add(n)
        n *= 2
    return sorted(counts)


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `n` inside the block (None: left as they are), restored after."""
    current = torch.get_num_threads()
    if n is None or n == current:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(current)


def _seconds_a_step(step: Callable[[], None], clock: Clock) -> float:
    """Seconds a step, over at least `_TIMED_SECONDS` and one step."""
    n, start = 0, clock()
    while True:
        step()
        n += 1
        elapsed = clock() - start
        if elapsed >= _TIMED_SECONDS:
            return elapsed / n


def time_candidates(step: Callable[[int], None], sizes: list[int], clock: Clock = time.perf_counter) -> dict[int, float]:
    """Seconds a step with each chunk size (`step(size)` takes one step in chunks of `size` members).

    Sizes are timed in turn over `_ROUNDS` rounds (a machine's slow moment does not fall on one
    size alone), each for at least `_TIMED_SECONDS` and one step, after one warm-up step in the first
    round (it allocates the size's buffers); each keeps its best round. A step of 0.33 s (a 2D pack
    of 64 on 2 cores of an AMD EPYC) costs 3 steps a size.
    """
    best = {size: float("inf") for size in sizes}
    for round_ in range(_ROUNDS):
        for size in sizes:
            if round_ == 0:
                step(size)
            best[size] = min(best[size], _seconds_a_step(lambda: step(size), clock))
    return best


def paired(warm: Callable[[], None], cold: Callable[[], None], clock: Clock = time.perf_counter,
           rounds: int = _PAIRED_ROUNDS) -> tuple[float, float, float]:
    """Seconds a step of `warm` (timed before: its buffers are allocated) and of `cold` (one warm-up
    step first), timed back to back in `rounds` rounds of alternating order, and the median over
    rounds of cold's seconds over warm's (the geometric one: the median of the log ratios, so a
    round's r·1.5 and another's r/1.5 meet at r). Each round sees both at the machine's speed of
    the moment, so a slow spell or a drift, even one that starts midway, moves both sides of a
    round's ratio and not the median. The seconds are medians too (best-of-rounds is fooled by a
    slowdown that starts between one variant's best round and the other's), but only the ratio
    resists one that starts midway: each median can fall on either side of it."""
    cold()
    seconds = []  # (warm, cold) of each round
    for round_ in range(rounds):
        if round_ % 2 == 0:
            warm_s = _seconds_a_step(warm, clock)
            cold_s = _seconds_a_step(cold, clock)
        else:
            cold_s = _seconds_a_step(cold, clock)
            warm_s = _seconds_a_step(warm, clock)
        seconds.append((warm_s, cold_s))
    ratio = math.exp(statistics.median(math.log(c / w) for w, c in seconds))
    return statistics.median(w for w, _ in seconds), statistics.median(c for _, c in seconds), ratio


def choose(measured: dict[int, float], rule: int) -> int:
    """The fastest candidate, unless `rule`'s (the default: the rule's size, or every thread) is within _MARGIN of it."""
    fastest = min(measured, key=measured.__getitem__)
    return rule if measured[rule] <= measured[fastest] * (1 + _MARGIN) else fastest


@dataclass(frozen=True)
class Measurement:
    """What timing a step's variants found: the chunk, the passes and the threads to take."""

    members: int
    fused: bool  # the fused passes kept (False: none were offered, or the eager ones were clearly faster)
    threads: int
    seconds_per_step: dict[int, float]  # chunk size -> seconds a step (fused passes where offered, every thread)
    seconds_per_step_by_threads: dict[int, float]  # thread count -> seconds a step at the chosen chunk and passes
    eager_faster: str | None = None  # by how much and what was timed, where the eager passes beat the fused ones
    paired: dict[str, dict] = field(default_factory=dict)  # "members", "passes", "threads" -> what was timed in pairs

    def entry(self, rule: int) -> dict:
        """The cache's record of it."""
        return {"members": self.members, "rule": rule, "seconds_per_step": _by_name(self.seconds_per_step),
                "threads": self.threads, "seconds_per_step_by_threads": _by_name(self.seconds_per_step_by_threads),
                "eager_faster": self.eager_faster is not None, "paired": self.paired,
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _confirmed(default: Callable[[], None], proposed: Callable[[], None], clock: Clock, record: dict) -> bool:
    """Whether the `proposed` variant takes clearly less time a step than the `default` (by _MARGIN),
    by the median of paired rounds (the default is warm: it was timed before). Adds to `record` the
    proposal's time over the default's (that median), the default's median seconds a step, and the
    outcome."""
    default_s, _, ratio = paired(default, proposed, clock)
    record.update(ratio=ratio, default_seconds=default_s, kept=ratio * (1 + _MARGIN) < 1)
    return record["kept"]


def measure(step: Callable[[int, bool, int | None], None], sizes: list[int], rule: int, fused: bool,
            clock: Clock = time.perf_counter) -> Measurement:
    """Time a step's variants, one choice after another: the chunk size among `sizes` (with the fused
    passes if offered, every thread), then the eager passes at that size against the fused ones (a
    small step may not gain from a kernel call), then fewer threads (a small step's threads may cost
    more to wake than they give).
    `step(members, fused, threads)` takes one step so (threads None: the process's). Each choice keeps
    its default (`rule`'s size, the fused passes, every thread) unless another is clearly faster in
    pairs: the candidates' own timings (each its best of two rounds) only propose another size or
    thread count, since one quiet moment of the machine can favour whichever was timed in it. A gain
    those timings do not propose is not found; a proposal costs a warm-up step and 12 timings more (each
    30 ms and at least one step: 13 steps of a 2D pack of 64). Every pair timed is in `paired`, kept or not."""
    available = torch.get_num_threads()
    measured = time_candidates(lambda members: step(members, fused, None), sizes, clock)
    members, eager_faster, pairs = choose(measured, rule), None, {}
    if members != rule:
        pairs["members"] = {"default": rule, "proposed": members}
        if not _confirmed(lambda: step(rule, fused, None), lambda: step(members, fused, None), clock, pairs["members"]):
            members = rule
    if fused:  # a close call (a small 1D step: eager 3-10% faster, measured), so always timed in pairs
        pairs["passes"] = {"default": "fused", "proposed": "eager"}
        passes = pairs["passes"]
        if _confirmed(lambda: step(members, True, None), lambda: step(members, False, None), clock, passes):
            fused = False  # said by the ratio alone: each variant's median seconds can fall on either side of a slowdown
            eager_faster = (f"{1 - passes['ratio']:.0%} less time a step by the median of {_PAIRED_ROUNDS} paired rounds "
                            f"(a fused step: {passes['default_seconds'] * 1e3:.3g} ms)")
    counts = thread_candidates(available)
    by_threads = time_candidates(lambda n: step(members, fused, n), counts, clock) if len(counts) > 1 else {}
    threads = choose(by_threads, available) if by_threads else available
    if threads != available:
        pairs["threads"] = {"default": available, "proposed": threads}
        if not _confirmed(lambda: step(members, fused, None), lambda: step(members, fused, threads), clock, pairs["threads"]):
            threads = available
    return Measurement(members, fused, threads, measured, by_threads, eager_faster, pairs)


class TuningCache:
    """Chosen sizes by key, in one JSON file shared by every process of a home (a sweep's trials
    write it at once: each write merges under a lock and replaces the file atomically)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def get(self, key: str) -> dict | None:
        entry = self._read().get(key)
        return entry if isinstance(entry, dict) and isinstance(entry.get("members"), int) and entry["members"] >= 1 else None

    def put(self, key: str, entry: dict) -> str | None:
        """Keep `entry` under `key`; None, or why it could not be kept (a cache is worth no failed run)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked():
                entries = {**self._read(), key: entry}
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tuning-", suffix=".json")
                try:
                    with os.fdopen(fd, "w") as f:
                        json.dump({"version": CACHE_VERSION, "entries": entries}, f, indent=1, sort_keys=True)
                    os.replace(tmp, self.path)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
        except OSError as e:
            return f"{type(e).__name__}: {e.strerror or e}"
        return None

    def _read(self) -> dict:
        """The entries; an unreadable or foreign file counts as empty (it is rewritten by the next put)."""
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        entries = raw.get("entries") if isinstance(raw, dict) and raw.get("version") == CACHE_VERSION else None
        return entries if isinstance(entries, dict) else {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), part of every cache key: caches differ between CPUs."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def cache_key(shape: str, K: int, dtype: torch.dtype) -> str:
    """CPU, threads, torch, dtype, the step's shape and K: what the best size depends on."""
    return f"{cpu_name()} | threads {torch.get_num_threads()} | torch {torch.__version__} | {str(dtype).removeprefix('torch.')} | {shape} | K {K}"
