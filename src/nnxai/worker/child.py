"""The forked child of :mod:`nnxai.worker`: become the fresh process the client would have been.

It leaves the server's sockets and signal handlers, takes the client's descriptors as 0/1/2, its
directory, environment, umask and argv, resets what a fresh interpreter would hold afresh (seeds, thread
pools, :mod:`nnxai.io`'s start time and umask), runs the entry and shuts down as ``python -m`` does.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nnxai.worker.server import Server


def run_child(server: Server, conn: socket.socket, request: dict, fds: list[int], mask) -> None:
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
