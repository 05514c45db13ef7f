"""The Ray a sweep runs on: a local one that listens on loopback only, or a cluster joined within 30 s.

Local. Ray 2.60 binds its servers (GCS, raylet, object manager, every worker's gRPC server) to all
interfaces unless it believes it runs on a single machine, which it decides from
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`: set to 0, the node's address resolves to 127.0.0.1 and each
server binds 127.0.0.1 (passing `_node_ip_address` alone changes no binding: measured). The
variable is read when `ray` is first imported, so it is set before that, and inherited by every
process the local Ray starts. Token authentication is then not needed: nothing outside this
machine can reach it (`RAY_AUTH_MODE=disabled` unless the user set a mode). tests/test_resume.py
checks the sockets themselves (`ss -ltnp`).

What the local Ray starts ends with this command, however it ends (pipeline.watchdog).

A cluster. `--address HOST:PORT` is first tried with a plain TCP connection and `ray.init` is
given 30 s; an address that does not answer is bad input (exit 2), not minutes of retries.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

from drm.config import ConfigError

JOIN_SECONDS = 30.0
_LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def prepare_local() -> None:
    """Make the local Ray this process will start listen on loopback only (before `ray` is imported)."""
    if "ray" in sys.modules and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        from ray._private import ray_constants

        if ray_constants.ENABLE_RAY_CLUSTER:  # imported too early: it would bind every interface
            raise RuntimeError("ray was imported before the local Ray was set to listen on loopback only")
    os.environ.update(_LOOPBACK)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # nothing off this machine can reach it


def quiet_tune() -> None:
    # Checkpoints are small and frequent by design; Tune's advice about it is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own progress lines, not Tune's tables


def start_local(cpus: int | None = None):
    """A Ray for this command alone, on this machine's loopback, ended with it: returns the
    watchdog (pipeline.watchdog) that ends what is left of it when this process ends; keep it, and
    `stop_local` it after `ray.shutdown()`."""
    import ray

    from pipeline import watchdog

    prepare_local()
    guard = watchdog.start()
    ray.init(
        num_cpus=cpus or os.cpu_count(),
        object_store_memory=256 * 1024**2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _node_ip_address="127.0.0.1",
    )
    return guard


def stop_local(guard) -> None:
    """After `ray.shutdown()`: the watchdog ends any straggler of the local Ray, then itself."""
    guard.stdin.close()
    try:
        guard.wait(timeout=10)
    except Exception:  # noqa: BLE001 - it ends with this process in any case
        pass


_ALLOWED = "allowed: auto, or a running cluster's HOST:PORT"


def check_address(address: str) -> None:
    """Something listens at HOST:PORT (a plain TCP connection, 10 s at most), else ConfigError (exit 2)."""
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("address", f"{address!r} is not HOST:PORT; {_ALLOWED}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as e:
        raise ConfigError("address", f"nothing answers at {address} ({e.strerror or type(e).__name__}); {_ALLOWED}") from None


def join(address: str) -> None:
    """Join the cluster at `address` (auto or HOST:PORT; `check_address` has seen it answer) within
    JOIN_SECONDS, else ConfigError (exit 2)."""
    import ray

    failure: list[BaseException] = []

    def connect() -> None:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except BaseException as e:  # noqa: BLE001 - said below as the user's address
            failure.append(e)

    thread = threading.Thread(target=connect, daemon=True, name="ray-join")
    thread.start()
    thread.join(JOIN_SECONDS)
    if thread.is_alive():
        raise ConfigError("address", f"no Ray cluster answered at {address!r} within {JOIN_SECONDS:.0f} s; {_ALLOWED}")
    if failure:
        raise ConfigError("address", f"cannot join a Ray cluster at {address!r} ({type(failure[0]).__name__}); {_ALLOWED}")
