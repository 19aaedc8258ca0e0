"""Starting and stopping a :mod:`nnxai.worker` server: by hand (:func:`start`, :func:`stop`) or for the
jobs of a Snakemake run (:func:`start_for_workflow`, :func:`why_not_for`, called by the Snakefile).
"""

from __future__ import annotations

import os
import socket
import sys
import time

from nnxai.worker.client import ping
from nnxai.worker.protocol import DISABLE_ENV, ENV, KILL_GRACE


class Handle:
    """A server started by :func:`start`: its socket, process and log file."""

    def __init__(self, path: str, process, log_path: str, temp_dir: str | None):
        self.path, self.process, self.log_path, self.temp_dir = path, process, log_path, temp_dir


_CURRENT: Handle | None = None
_MAX_SOCKET_PATH = 107          # sun_path holds 108 bytes with the terminating NUL


def _socket_path(folder: str) -> tuple[str, str | None]:
    """``folder/<pid>.sock``, or a short private path under the temporary folder when that is too long."""
    path = os.path.join(os.path.abspath(folder), f"{os.getpid()}.sock")
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path, None
    import tempfile

    temp_dir = tempfile.mkdtemp(prefix="nnxai-")
    return os.path.join(temp_dir, "w.sock"), temp_dir


def start(folder: str = ".snakemake/nnxai-worker", parent_pid: int | None = None, idle_timeout: float = 3600.0,
          timeout: float = 30.0, preload=None, entry: str | None = None, env: dict | None = None,
          log=None) -> Handle | None:
    """Start a server whose socket and log lie in ``folder``; wait until it answers.

    Returns its :class:`Handle`, or ``None`` (after calling ``log`` with the reason) when it did not come up
    within ``timeout`` seconds.  ``env`` is the server's environment (default: this process's), which must
    be the jobs' environment up to :data:`~nnxai.worker.protocol.REPLAYED_ENV`.
    """
    import subprocess

    log = log or (lambda message: print(message, file=sys.stderr))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path, temp_dir = _socket_path(folder)
    log_path = os.path.join(os.path.abspath(folder), f"{os.getpid()}.log")
    cmd = [sys.executable, "-m", "nnxai.worker", "serve", "--socket", path, "--idle-timeout", str(idle_timeout)]
    if parent_pid is not None:
        cmd += ["--parent-pid", str(parent_pid)]
    if preload is not None:
        cmd += ["--preload", ",".join(preload)]
    if entry is not None:
        cmd += ["--entry", entry]
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=env, cwd=os.path.abspath(folder))
    handle = Handle(path, process, log_path, temp_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if ping(path) == process.pid:
            return handle
        time.sleep(0.05)
    stop(handle)
    log(f"nnxai worker did not come up within {timeout:.0f} s (see {log_path}); jobs start their own Python")
    return None


def stop(handle: Handle | None = None) -> None:
    """Stop ``handle``'s server (default: the one :func:`start_for_workflow` started); idempotent."""
    global _CURRENT
    if handle is None:
        handle, _CURRENT = _CURRENT, None
    if handle is None:
        return
    if os.environ.get(ENV) == handle.path:
        del os.environ[ENV]
    process = handle.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=2 * KILL_GRACE + 5)
        except Exception:
            process.kill()
            process.wait()
    for path in (handle.path, handle.temp_dir):
        try:
            os.rmdir(path) if path == handle.temp_dir else os.unlink(path)
        except (OSError, TypeError):
            pass


def why_not_for(workflow) -> str | None:
    """Why the jobs of this Snakemake run cannot use a worker on this machine, if they cannot."""
    if os.environ.get(DISABLE_ENV, "0") not in ("", "0"):
        return f"{DISABLE_ENV} is set"
    if not sys.platform.startswith("linux") or not hasattr(socket, "send_fds"):
        return "needs Linux (SO_PEERCRED, sched_getaffinity) and Python >= 3.9"
    if getattr(workflow, "dryrun", False) or getattr(workflow, "touch", False):
        return "dry run or --touch"
    if not getattr(workflow, "local_exec", True) or not getattr(workflow, "is_main_process", True):
        return "jobs run on a cluster or remote executor"
    settings = getattr(workflow, "deployment_settings", None)
    methods = {getattr(m, "name", str(m)).lower() for m in getattr(settings, "deployment_method", ()) or ()}
    if methods & {"conda", "apptainer"}:
        return "jobs run in conda environments or containers (another interpreter)"
    return None


def start_for_workflow(workflow, timeout: float = 30.0) -> Handle | None:
    """The Snakefile's ``onstart``: serve this run's jobs from a worker, when they run on this machine.

    Sets ``$NNXAI_WORKER`` for the jobs' shells; :func:`stop` (``onsuccess``/``onerror``, and at exit)
    ends the server, which also ends by itself when this process is gone.
    """
    global _CURRENT
    try:
        from snakemake.logging import logger
    except ImportError:
        import logging

        logger = logging.getLogger("nnxai.worker")
    reason = why_not_for(workflow)
    if reason is not None:
        os.environ.pop(ENV, None)
        logger.info(f"nnxai worker: not used ({reason}); each job starts its own Python")
        return None
    stop()
    handle = start(os.path.join(".snakemake", "nnxai-worker"), parent_pid=os.getpid(), timeout=timeout,
                   log=logger.warning)
    if handle is not None:
        import atexit

        atexit.register(stop, handle)
        os.environ[ENV] = handle.path
        _CURRENT = handle
        logger.info(f"nnxai worker: jobs run in forks of pid {handle.process.pid} (log {handle.log_path}; "
                    f"{DISABLE_ENV}=1 turns it off)")
    return handle
