"""The server side of :mod:`nnxai.worker`: preload once, then fork one child per accepted call.

:func:`serve` (``python -m nnxai.worker serve``) imports the preload (:mod:`nnxai.worker.preload`), then runs
:class:`Server`: one ``selectors`` loop that accepts requests, declines those a fresh interpreter could run
differently, forks the rest (the child: :mod:`nnxai.worker.child`), relays signals, reaps the children and
reports their status; when an ``nnxai`` source it imported changes, it re-executes itself once idle.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import time

from nnxai.worker.child import run_child
from nnxai.worker.client import ping
from nnxai.worker.preload import PRELOAD, fork_hazard, warm
from nnxai.worker.protocol import HEADER, KILL_GRACE, RELAYED_SIGNALS, REPLAYED_ENV, fingerprint

ENTRY = "nnxai.cli:main"


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} nnxai-worker[{os.getpid()}] {message}", file=sys.stderr, flush=True)


def _sources() -> dict:
    """Modification stamps of the ``nnxai`` sources the server imported, and of their packages' listings."""
    stamps: dict = {}
    for name, module in list(sys.modules.items()):
        if name != "nnxai" and not name.startswith("nnxai."):
            continue
        for folder in getattr(module, "__path__", None) or ():
            try:
                stamps[folder] = sorted(e for e in os.listdir(folder) if e.endswith(".py") or "." not in e)
            except OSError:
                stamps[folder] = None
        path = getattr(module, "__file__", None)
        if path:
            try:
                stat = os.stat(path)
                stamps[path] = (stat.st_mtime_ns, stat.st_size)
            except OSError:
                stamps[path] = None
    return stamps


class _Job:
    __slots__ = ("conn", "pid", "label", "started", "gone_at", "killed")

    def __init__(self, conn, pid, label):
        self.conn, self.pid, self.label, self.started = conn, pid, label, time.monotonic()
        self.gone_at, self.killed = None, False


class Server:
    """The fork server: one ``selectors`` loop over the listening socket, the clients and a SIGCHLD fd."""

    def __init__(self, path: str, parent_pid: int | None, idle_timeout: float, entry: str,
                 start_env: dict, argv: list[str], started_ns: int = 0):
        import gc
        import importlib

        self.path, self.parent_pid, self.idle_timeout, self.argv = path, parent_pid, idle_timeout, argv
        self.parent_is_ppid = parent_pid is not None and os.getppid() == parent_pid
        self.start_env = start_env
        module, _, func = entry.partition(":")
        self.entry = getattr(importlib.import_module(module), func or "main")
        self.added_env = {k: v for k, v in os.environ.items() if start_env.get(k) != v}   # set by imports
        self.fingerprint = fingerprint()
        self.sources = _sources()
        # A source edited while the preload ran may have been imported before the edit: reload at once.
        self.stale = any(isinstance(v, tuple) and v[0] >= started_ns for v in self.sources.values())
        self.threadpools = None
        try:           # found once here: the child then sets them in ~1 ms
            from threadpoolctl import ThreadpoolController

            self.threadpools = ThreadpoolController()
        except ImportError:
            pass
        gc.collect()
        gc.freeze()          # forked children then do not touch (copy) the server's objects when collecting
        self.jobs: dict[int, _Job] = {}
        self.stopping = False
        self.last_active = time.monotonic()

    # setup and teardown

    def listen(self) -> None:
        import selectors

        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        os.chmod(self.path, 0o600)
        self.inode = os.stat(self.path).st_ino
        self.listener.listen(64)
        self.wake_r, self.wake_w = socket.socketpair()
        for end in (self.wake_r, self.wake_w):
            end.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_stop)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "listen")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")

    def _on_stop(self, signum, frame):
        self.stopping = True

    def close_listener(self) -> None:
        if getattr(self, "listener", None) is None:
            return
        self.selector.unregister(self.listener)
        self.listener.close()
        self.listener = None
        try:
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except OSError:
            pass

    def parent_gone(self) -> bool:
        if self.parent_pid is None:
            return False
        if self.parent_is_ppid:
            return os.getppid() != self.parent_pid
        try:
            os.kill(self.parent_pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False

    def run(self) -> str:
        """Serve until stopped; why it stopped (``"stale"`` asks the caller to re-execute)."""
        _log(f"serving {self.path} (parent {self.parent_pid}, idle timeout {self.idle_timeout or 'none'} s)")
        stop_sent = None
        while True:
            now = time.monotonic()
            if self.stopping and stop_sent is None:
                self.close_listener()
                stop_sent = now
                for job in self.jobs.values():
                    self._signal(job, signal.SIGTERM)
            if stop_sent is not None and now - stop_sent > KILL_GRACE:
                for job in self.jobs.values():
                    self._signal(job, signal.SIGKILL)
            if self.listener is not None and (self.parent_gone() or self.stale):
                self.close_listener()
                _log("parent gone" if not self.stale else "sources changed: reloading when idle")
            if not self.jobs:
                if self.listener is None:
                    return "stale" if self.stale and not self.stopping and not self.parent_gone() else "stopped"
                if self.idle_timeout and now - self.last_active > self.idle_timeout:
                    self.close_listener()
                    return "idle"
            for job in self.jobs.values():
                if job.gone_at is not None and not job.killed and now - job.gone_at > KILL_GRACE:
                    self._signal(job, signal.SIGKILL)
                    job.killed = True
            for key, _ in self.selector.select(timeout=0.5):
                if key.data == "listen":
                    self._accept()
                elif key.data == "wake":
                    try:
                        while self.wake_r.recv(4096):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    self._from_client(key.data)
            self._reap()

    # requests

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.last_active = time.monotonic()
        fds: list[int] = []
        try:
            conn.settimeout(5.0)
            uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                      struct.calcsize("3i")))[1]
            if uid != os.getuid():
                raise PermissionError(f"peer uid {uid}")
            head, fds, _, _ = socket.recv_fds(conn, HEADER.size, 3)
            while len(head) < HEADER.size:
                more = conn.recv(HEADER.size - len(head))
                if not more:
                    raise ConnectionError("short header")
                head += more
            (size,) = HEADER.unpack(head)
            body = bytearray()
            while len(body) < size:
                more = conn.recv(min(size - len(body), 1 << 20))
                if not more:
                    raise ConnectionError("short request")
                body += more
            request = json.loads(body)
            if request.get("ping"):
                self._reply(conn, {"pong": os.getpid()})
                raise ConnectionError("")
            reason = self._why_not(request)
            if reason:
                _log(f"declined {request['argv'][1:3]}: {reason}")
                self._reply(conn, {"accepted": False, "reason": reason})
                raise ConnectionError("")
            self._fork(conn, request, fds)
        except (OSError, ValueError, KeyError, TypeError) as err:
            if str(err):
                _log(f"dropped a connection: {err}")
            for fd in fds:
                os.close(fd)
            conn.close()

    def _why_not(self, request: dict) -> str | None:
        """Why a fresh interpreter could run this request differently from a fork of this one, if it could."""
        for key, mine in self.fingerprint.items():
            if request.get(key) != mine:
                return f"the interpreter differs ({key})"
        env = request["env"]
        differ = sorted(k for k in set(env) | set(self.start_env) if env.get(k) != self.start_env.get(k)
                        and k not in REPLAYED_ENV and k != "PYTHONUNBUFFERED" and not k.startswith("NNXAI_"))
        if differ:
            return f"the environment differs ({', '.join(differ[:6])})"
        if self.stale or _sources() != self.sources:
            self.stale = True
            return "nnxai sources changed since it started"
        return None

    @staticmethod
    def _reply(conn: socket.socket, message: dict) -> None:
        try:
            conn.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            pass

    def _fork(self, conn: socket.socket, request: dict, fds: list[int]) -> None:
        import selectors

        sys.stdout.flush()
        sys.stderr.flush()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, set(RELAYED_SIGNALS) | {signal.SIGCHLD})
        pid = os.fork()
        if pid == 0:
            try:
                run_child(self, conn, request, fds, blocked)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(1)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        try:
            os.setpgid(pid, pid)         # the child does it too; whichever runs first wins the race
        except OSError:
            pass
        for fd in fds:
            os.close(fd)
        job = _Job(conn, pid, " ".join(request["argv"][1:4]))
        self.jobs[pid] = job
        conn.settimeout(None)
        conn.setblocking(False)
        self.selector.register(conn, selectors.EVENT_READ, job)
        self._reply(conn, {"accepted": True, "pid": pid})

    def _signal(self, job: _Job, signum: int) -> None:
        try:
            os.killpg(job.pid, signum)
        except OSError:
            pass

    def _from_client(self, job: _Job) -> None:
        try:
            data = job.conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:                  # the client is gone (killed): so goes its job
            if job.gone_at is None:
                _log(f"client of pid {job.pid} ({job.label}) vanished: terminating it")
                job.gone_at = time.monotonic()
                self._signal(job, signal.SIGTERM)
                self.selector.unregister(job.conn)
            return
        for line in data.splitlines():
            try:
                signum = int(json.loads(line)["signal"])
            except (ValueError, KeyError, TypeError):
                continue
            if signum in RELAYED_SIGNALS:
                self._signal(job, signum)

    def _reap(self) -> None:
        while self.jobs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self.jobs.pop(pid, None)
            if job is None:
                continue
            self.last_active = time.monotonic()
            outcome = ({"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status)
                       else {"exit": os.waitstatus_to_exitcode(status)})
            _log(f"pid {pid} ({job.label}) ended after {time.monotonic() - job.started:.2f} s: {outcome}")
            if job.gone_at is None:
                self.selector.unregister(job.conn)
                job.conn.setblocking(True)
                job.conn.settimeout(5.0)
                self._reply(job.conn, outcome)
            job.conn.close()



def serve(path: str, parent_pid: int | None = None, idle_timeout: float = 0.0, preload=PRELOAD,
          entry: str = ENTRY) -> int:
    """Import ``preload`` once, then serve requests at ``path`` until stopped (see :mod:`nnxai.worker`)."""
    start_env = dict(os.environ)
    argv = sys.argv[1:]
    if ping(path) is not None:
        _log(f"another worker serves {path} already")
        return 1
    if os.path.exists(path):
        import stat

        if not stat.S_ISSOCK(os.stat(path).st_mode):
            _log(f"{path} exists and is not a socket")
            return 1
        os.unlink(path)                # a socket left by a server that was killed
    started, started_ns = time.perf_counter(), time.time_ns()
    warm(preload, _log)
    hazard = fork_hazard()
    if hazard:
        _log(hazard)
        return 1
    server = Server(path, parent_pid, idle_timeout, entry, start_env, argv, started_ns)
    server.listen()
    _log(f"ready after {time.perf_counter() - started:.1f} s of imports")
    outcome = server.run()
    _log(f"exiting ({outcome})")
    if outcome == "stale":            # re-execute: import the edited sources afresh
        os.execve(sys.executable, [sys.executable, "-m", "nnxai.worker", *argv], start_env)
    return 0
