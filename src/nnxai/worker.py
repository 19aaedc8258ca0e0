"""A persistent worker for the jobs of one workflow run: fork a warm process instead of starting Python.

Each Snakemake job is one ``python -m nnxai <stage>`` call, and a fresh interpreter spends ~4 s importing
torch, captum and the registries before any work.  The worker (a "zygote" fork server) imports them once;
``python -m nnxai`` finds it through ``$NNXAI_WORKER`` (a Unix socket) and becomes a thin client:

1. the client sends its argv, working directory, environment, umask and interpreter fingerprint, with its
   stdin/stdout/stderr file descriptors (``SCM_RIGHTS``), and imports nothing heavy (~30 ms in all);
2. the server checks that a fresh process would run the same code the same way (same interpreter, path
   and flags; unchanged ``nnxai`` sources; no environment difference other than those it replays, see
   :data:`REPLAYED_ENV`), else it declines and the client runs the stage in-process as before;
3. it forks; the child leads its own process group, takes the client's descriptors as 0/1/2, its
   directory, environment, umask and argv, the per-process state a fresh interpreter would have (RNG
   seeds, thread pools sized from ``OMP_NUM_THREADS`` & co., :mod:`nnxai.io`'s start time and umask),
   runs ``nnxai.cli.main(argv)`` and exits with its status, which the server sends back to the client;
4. the client relays SIGTERM/SIGINT/SIGHUP to the child's group and exits as the child did (a status, or
   the same signal); if the client vanishes (SIGKILL), the child gets SIGTERM (unwinding removes its
   temporary files, see :mod:`nnxai.cli`), then SIGKILL after :data:`KILL_GRACE` seconds.

Every output is written by the same code from the same inputs, so results are bit for bit those of a
fresh process (tests/test_worker.py, and the smoke fingerprint of tests/test_e2e_smoke.py, which runs
through the worker).  The server is single-threaded (one ``selectors`` loop, SIGCHLD through a wakeup
fd), never runs a torch operation nor touches CUDA, so each fork starts from a clean point.  It exits
when its parent (the Snakemake process) is gone -- after its running jobs -- or when idle for
``--idle-timeout`` seconds; when an ``nnxai`` source it imported changes, it re-executes itself once idle.

The Snakefile starts it for local runs (:func:`start_for_workflow`, not for cluster executors, dry runs or
``--use-conda``); ``NNXAI_NO_WORKER=1`` turns it off.  By hand::

    python -m nnxai.worker serve --socket /tmp/w.sock &   NNXAI_WORKER=/tmp/w.sock python -m nnxai ...
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import time

ENV = "NNXAI_WORKER"
DISABLE_ENV = "NNXAI_NO_WORKER"
#: Modules the server imports once, because jobs import them: torch alone costs ~2 s; torch.optim imports
#: torch._dynamo on a first step (~1 s); the methods, metrics and report writers import scikit-learn,
#: SciPy, pandas, scikit-image, seaborn and plotly inside their functions; torch._dynamo's exit handler
#: imports tabulate (0.13 s at the end of every job).
PRELOAD = ("torch", "torch._dynamo", "tabulate", "captum.attr", "nnxai.cli", "nnxai.pipeline", "nnxai.config",
           "nnxai.workflow", "sklearn.cluster", "sklearn.datasets", "sklearn.ensemble", "sklearn.linear_model",
           "scipy.optimize", "scipy.stats", "scipy.ndimage", "skimage.segmentation", "pandas", "seaborn",
           "plotly.graph_objects")
ENTRY = "nnxai.cli:main"
#: Environment variables that may differ between the server and a job: replayed in the child (thread
#: counts, temporary folder) or read by nnxai only at call time (``NNXAI_*``) or not read (the shell's own).
REPLAYED_ENV = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "TMPDIR", "TMP", "TEMP", "TEMPDIR",
                "PWD", "OLDPWD", "SHLVL", "_")
RELAYED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
KILL_GRACE = 3.0          # seconds between SIGTERM and SIGKILL of a job whose client vanished
ACK_TIMEOUT = 30.0        # seconds the client waits for the server to accept before running in-process
_FLAGS = ("debug", "inspect", "interactive", "optimize", "dont_write_bytecode", "no_user_site", "no_site",
          "ignore_environment", "verbose", "bytes_warning", "quiet", "hash_randomization", "isolated",
          "dev_mode", "utf8_mode", "warn_default_encoding", "safe_path", "int_max_str_digits")
_HEADER = struct.Struct("!I")


def _flags() -> dict:
    return {name: getattr(sys.flags, name, None) for name in _FLAGS}


def _fingerprint() -> dict:
    """What makes a fresh interpreter run differently: the server refuses requests that differ."""
    return {"executable": sys.executable, "path": sys.path[1:], "flags": _flags(),
            "warnoptions": list(sys.warnoptions), "xoptions": {k: str(v) for k, v in sys._xoptions.items()}}


# --- client --------------------------------------------------------------------------------------------

def enabled() -> str | None:
    """The socket named by ``$NNXAI_WORKER``, unless ``$NNXAI_NO_WORKER`` is set (to anything but 0)."""
    if os.environ.get(DISABLE_ENV, "0") not in ("", "0"):
        return None
    return os.environ.get(ENV) or None


def _lines(sock: socket.socket):
    buffer = b""
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)
        chunk = sock.recv(65536)
        if not chunk:
            return
        buffer += chunk


def forward(path: str, argv: list[str]) -> int | None:
    """Run ``python -m nnxai argv`` in the worker at ``path``; its exit status, or ``None`` if not served
    (no server there, or it declined): the caller then runs the command itself."""
    if not hasattr(socket, "send_fds"):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    umask = os.umask(0)
    os.umask(umask)
    fds = [fd for fd in (0, 1, 2) if _is_open(fd)]
    body = json.dumps({**_fingerprint(), "argv": sys.argv[:1] + list(argv), "sys_path0": sys.path[0],
                       "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask, "fds": fds,
                       "unbuffered": bool(getattr(sys.__stdout__, "write_through", False))}).encode()
    replies = _lines(sock)
    try:
        sock.settimeout(ACK_TIMEOUT)
        socket.send_fds(sock, [_HEADER.pack(len(body))], fds)
        sock.sendall(body)
        ack = next(replies, None)
    except (OSError, ValueError):
        ack = None
    if not ack or not ack.get("accepted"):
        sock.close()
        if ack:
            print(f"nnxai: the worker declined ({ack.get('reason')}); running in this process", file=sys.stderr)
        return None
    sock.settimeout(None)

    def relay(signum, frame):
        try:
            sock.sendall(json.dumps({"signal": signum}).encode() + b"\n")
        except OSError:
            pass

    for signum in RELAYED_SIGNALS:
        signal.signal(signum, relay)
    try:
        done = next(replies, None)
    except (OSError, ValueError):
        done = None
    sock.close()
    if done is None:
        print("nnxai: lost the worker while it ran this command; its outcome is unknown", file=sys.stderr)
        return 1
    if "signal" in done:       # die of the same signal, as the stage did
        signal.signal(done["signal"], signal.SIG_DFL)
        os.kill(os.getpid(), done["signal"])
        return 128 + done["signal"]
    return done["exit"]


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def ping(path: str, timeout: float = 1.0) -> int | None:
    """The pid of the server listening at ``path``, or ``None``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            body = json.dumps({"ping": True}).encode()
            sock.sendall(_HEADER.pack(len(body)) + body)
            reply = next(_lines(sock), None)
    except (OSError, ValueError):
        return None
    return reply.get("pong") if reply else None


# --- server --------------------------------------------------------------------------------------------

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
        self.fingerprint = _fingerprint()
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
            head, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
            while len(head) < _HEADER.size:
                more = conn.recv(_HEADER.size - len(head))
                if not more:
                    raise ConnectionError("short header")
                head += more
            (size,) = _HEADER.unpack(head)
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
                _child(self, conn, request, fds, blocked)
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


# --- the forked child: become the fresh process the client would have been ----------------------------

def _child(server: Server, conn: socket.socket, request: dict, fds: list[int], mask) -> None:
    os.setpgid(0, 0)
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    server.selector.close()
    for sock in [server.listener, server.wake_r, server.wake_w, conn] + [j.conn for j in server.jobs.values()]:
        if sock is not None:
            sock.close()
    _take_stdio(request, fds)
    os.environ.clear()
    os.environ.update({**request["env"], **server.added_env})
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    sys.argv = list(request["argv"])
    sys.path[0] = request["sys_path0"]
    _fresh_process_state(request, server.threadpools)
    os._exit(_run(server.entry, sys.argv[1:], mask))


def _take_stdio(request: dict, fds: list[int]) -> None:
    """The client's descriptors as 0/1/2, and ``sys.std*`` built as CPython builds them at start-up."""
    import io

    received = dict(zip(request["fds"], fds))
    for target in (0, 1, 2):
        source = received.get(target)
        if source is None:
            source = os.open(os.devnull, os.O_RDWR)
            received[target] = source
        os.dup2(source, target)
    for source in received.values():
        if source > 2:
            os.close(source)
    buffered = not request.get("unbuffered")
    global _SERVER_STDIO
    _SERVER_STDIO = (sys.stdin, sys.stdout, sys.stderr)    # kept alive: collecting them would close 0/1/2
    streams = []
    for fd, name, template in ((0, "<stdin>", sys.__stdin__), (1, "<stdout>", sys.__stdout__),
                               (2, "<stderr>", sys.__stderr__)):
        write = fd > 0
        buf = io.open(fd, "wb" if write else "rb", buffering=-1 if buffered or not write else 0, closefd=False)
        raw = buf.raw if hasattr(buf, "raw") else buf
        raw.name = name
        stream = io.TextIOWrapper(buf, encoding=getattr(template, "encoding", None) or "utf-8",
                                  errors=getattr(template, "errors", None) or "strict", newline="\n",
                                  line_buffering=buffered and (raw.isatty() or fd == 2),
                                  write_through=not buffered)
        stream.mode = "w" if write else "r"
        streams.append(stream)
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams


_SERVER_STDIO = None


def _positive(value) -> int | None:
    try:
        number = int(str(value).split(",")[0].strip())
    except ValueError:
        return None
    return number if number > 0 else None


def _fresh_process_state(request: dict, threadpools) -> None:
    """What a fresh interpreter would hold that the server fixed at import: seeds, thread pools, caches."""
    import weakref

    for info in list(weakref.finalize._registry.values()):
        info.atexit = False     # the server's finalizers (torch's op libraries): its own business, not the job's
    modules = sys.modules
    if "tempfile" in modules:
        modules["tempfile"].tempdir = None                 # re-read from TMPDIR & co. on first use
    if "nnxai.io" in modules:                              # its process start (sweeps) and umask (chmod)
        modules["nnxai.io"].PROCESS_START = time.time()
        modules["nnxai.io"]._UMASK = request["umask"]
    if "numpy.random" in modules:
        modules["numpy.random"].seed()                     # fresh entropy, as at import
    if "torch" in modules:
        modules["torch"].default_generator.seed()
    env, cpus = os.environ, len(os.sched_getaffinity(0))
    openmp = _positive(env.get("OMP_NUM_THREADS")) or cpus
    blas = next((n for n in map(_positive, (env.get("OPENBLAS_NUM_THREADS"), env.get("GOTO_NUM_THREADS"),
                                            env.get("OMP_NUM_THREADS"))) if n), cpus)
    if threadpools is not None:    # libgomp and OpenBLAS read these variables once, when the server loaded them
        threadpools.select(user_api="openmp").limit(limits=openmp)
        threadpools.select(user_api="blas").limit(limits=min(blas, cpus))


def _run(entry, argv: list[str], mask) -> int:
    """``raise SystemExit(entry(argv))`` and interpreter shutdown, as ``python -m`` does them."""
    import atexit
    import threading

    code = 0
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)   # a signal relayed meanwhile is delivered now
        code = entry(argv)
    except SystemExit as exc:
        code = exc.code
    except BaseException as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
        code = 1
        if isinstance(exc, KeyboardInterrupt):
            code = -signal.SIGINT
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for step in (threading._shutdown, atexit._run_exitfuncs, sys.stdout.flush, sys.stderr.flush):
        try:
            step()
        except BaseException:
            pass
    if code == -signal.SIGINT:          # an uncaught Ctrl-C ends the process by SIGINT, as CPython does
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code & 0xFF


def _cuda_driver_loaded() -> bool:
    """Whether libcuda is mapped (torch loads it on first CUDA use; the server must not have used CUDA)."""
    try:
        with open("/proc/self/maps") as maps:
            return any("libcuda.so" in line for line in maps)
    except OSError:
        return False


def serve(path: str, parent_pid: int | None = None, idle_timeout: float = 0.0, preload=PRELOAD,
          entry: str = ENTRY) -> int:
    """Import ``preload`` once, then serve requests at ``path`` until stopped (see the module docstring)."""
    import importlib

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
    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError as err:      # an optional dependency: its jobs import it themselves
            _log(f"not preloaded: {err}")
    if "nnxai.cli" in sys.modules:
        _fill_registries()
    import threading

    if threading.active_count() > 1:
        _log(f"an import started threads ({threading.enumerate()}): forking is unsafe; not serving")
        return 1
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized() or _cuda_driver_loaded():
        _log("an import loaded the CUDA driver: forking after CUDA starts is unsafe; not serving")
        return 1
    server = Server(path, parent_pid, idle_timeout, entry, start_env, argv, started_ns)
    server.listen()
    _log(f"ready after {time.perf_counter() - started:.1f} s of imports")
    outcome = server.run()
    _log(f"exiting ({outcome})")
    if outcome == "stale":            # re-execute: import the edited sources afresh
        os.execve(sys.executable, [sys.executable, "-m", "nnxai.worker", *argv], start_env)
    return 0


def _fill_registries() -> None:
    """Import what every job reads: the methods, metrics and report items, and the CLI parser's modules."""
    from nnxai import registry
    from nnxai.cli import build_parser
    from nnxai.metrics import metrics
    from nnxai.report import REPORT_ITEMS

    registry.implemented_ids()
    metrics()
    list(REPORT_ITEMS.items())
    build_parser()
    try:    # the parsed imports of nnxai's sources (cached by modification time), read by evaluate jobs
        from nnxai import codedeps

        codedeps.closure(sorted(m for m in sys.modules if m.startswith("nnxai.") and codedeps.module_file(m)))
    except Exception as err:   # an optional warm-up: jobs parse the sources themselves
        _log(f"nnxai.codedeps not warmed: {err!r}")


# --- starting and stopping it for a workflow ------------------------------------------------------------

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
    be the jobs' environment up to :data:`REPLAYED_ENV`.
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


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m nnxai.worker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="import the heavy modules once, then fork one child per nnxai call")
    p.add_argument("--socket", required=True, help="Unix socket path (at most 107 bytes)")
    p.add_argument("--parent-pid", type=int, help="exit (after the running jobs) when this process is gone")
    p.add_argument("--idle-timeout", type=float, default=0.0, help="exit after this many idle seconds (0: never)")
    p.add_argument("--preload", default=",".join(PRELOAD), help="comma-separated modules imported once")
    p.add_argument("--entry", default=ENTRY, help="module:function run with the argv of each call")
    p = sub.add_parser("ping", help="print the pid of the server at --socket (exit 1 if none)")
    p.add_argument("--socket", required=True)
    args = parser.parse_args(argv)
    if args.command == "ping":
        pid = ping(args.socket)
        print(pid if pid is not None else "no worker")
        return 0 if pid is not None else 1
    return serve(args.socket, args.parent_pid, args.idle_timeout,
                 tuple(m for m in args.preload.split(",") if m), args.entry)


if __name__ == "__main__":
    raise SystemExit(main())
