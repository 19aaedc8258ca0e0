"""The client side of :mod:`nnxai.worker`: what ``python -m nnxai`` runs when ``$NNXAI_WORKER`` is set.

It hands the call (argv, directory, environment, umask, stdin/stdout/stderr) to the server, relays the
signals it gets to the job and exits as the job did.  It imports nothing heavy: a few standard modules.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

from nnxai.worker.protocol import DISABLE_ENV, ENV, HEADER, RELAYED_SIGNALS, fingerprint, messages

ACK_TIMEOUT = 30.0        # seconds the client waits for the server to accept before running in-process


def enabled() -> str | None:
    """The socket named by ``$NNXAI_WORKER``, unless ``$NNXAI_NO_WORKER`` is set (to anything but 0)."""
    if os.environ.get(DISABLE_ENV, "0") not in ("", "0"):
        return None
    return os.environ.get(ENV) or None


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
    body = json.dumps({**fingerprint(), "argv": sys.argv[:1] + list(argv), "sys_path0": sys.path[0],
                       "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask, "fds": fds,
                       "unbuffered": bool(getattr(sys.__stdout__, "write_through", False))}).encode()
    replies = messages(sock)
    try:
        sock.settimeout(ACK_TIMEOUT)
        socket.send_fds(sock, [HEADER.pack(len(body))], fds)
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
            sock.sendall(HEADER.pack(len(body)) + body)
            reply = next(messages(sock), None)
    except (OSError, ValueError):
        return None
    return reply.get("pong") if reply else None
