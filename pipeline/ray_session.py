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

A cluster. `--address HOST:PORT` is first tried with a plain TCP connection, then joined by a
throwaway process given 30 s, then by this one; an address that does not answer is bad input
(exit 2), not minutes of retries.
"""

from __future__ import annotations

import os
import socket
import subprocess
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
    # Ctrl-C ends the command (exit 130; --resume continues), not only the Tuner it interrupts:
    # Tune's own handler would return from fit() and let the driver start its next phase.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")


def ask(ref, default, timeout: float = 30.0):
    """ray.get of one answer, or `default` when the actor does not answer (gone, or busy past `timeout`)."""
    import ray

    try:
        return ray.get(ref, timeout=timeout)
    except Exception:  # noqa: BLE001 - a recorder that is gone: the tables say what landed
        return default


def start_local(cpus: int | None = None):
    """A Ray for this command alone, on this machine's loopback, ended with it: returns the
    watchdog (pipeline.watchdog) that ends what is left of it when this process ends; keep it,
    and `close()` it after `ray.shutdown()`."""
    import ray

    from pipeline.watchdog import Guard

    prepare_local()
    guard = Guard()
    guard.mark()
    try:
        ray.init(
            address="local",  # a Ray of its own, whatever RAY_ADDRESS or a running `ray start` says
            num_cpus=cpus or os.cpu_count(),
            object_store_memory=256 * 1024**2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _node_ip_address="127.0.0.1",
        )
    except Exception as e:  # noqa: BLE001 - said in one line; nothing has run yet
        guard.close()
        raise RuntimeError(f"the local Ray did not start ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]})") from None
    finally:
        guard.unmark()
    return guard


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


_PROBE = "import sys, ray; ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False)"


def join(address: str) -> None:
    """Join the cluster at `address` (auto or HOST:PORT; `check_address` has seen it answer) within
    JOIN_SECONDS, else ConfigError (exit 2).

    A throwaway process joins first: a Ray client that finds no GCS retries and warns on stderr
    from threads Python cannot stop, so the attempt that may fail is one that can be killed, and
    its words kept from the user's terminal. Only an address that took it joins this process."""
    import ray

    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE, address], capture_output=True, text=True, timeout=JOIN_SECONDS)
    except subprocess.TimeoutExpired:
        raise ConfigError("address", f"no Ray cluster answered at {address!r} within {JOIN_SECONDS:.0f} s; {_ALLOWED}") from None
    if probe.returncode != 0:
        raise ConfigError("address", f"cannot join a Ray cluster at {address!r} ({_raised(probe.stderr)}); {_ALLOWED}")

    failure: list[BaseException] = []

    def connect() -> None:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except BaseException as e:  # noqa: BLE001 - said below as the user's address
            failure.append(e)

    thread = threading.Thread(target=connect, daemon=True, name="ray-join")
    thread.start()
    thread.join(JOIN_SECONDS)  # the cluster answered the probe a moment ago; this guards against it going since
    if thread.is_alive():
        raise ConfigError("address", f"no Ray cluster answered at {address!r} within {JOIN_SECONDS:.0f} s; {_ALLOWED}")
    if failure:
        raise ConfigError("address", f"cannot join a Ray cluster at {address!r} ({type(failure[0]).__name__}); {_ALLOWED}")


def _raised(stderr: str) -> str:
    """The exception a Python process ended with, from its stderr: its last `Name: text` line."""
    for line in reversed(stderr.splitlines()):
        name, colon, text = line.partition(":")
        if colon and name.strip().replace(".", "").replace("_", "").isalnum() and name.strip().endswith(("Error", "Exception")):
            return f"{name.strip().rsplit('.', 1)[-1]}: {text.strip()[:160]}"
    return "it ended without saying why"
