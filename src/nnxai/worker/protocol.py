"""What the client and the server of :mod:`nnxai.worker` share: environment names, timings, framing.

A request is a 4-byte big-endian length (:data:`HEADER`, sent with the client's descriptors) and a JSON
body; every reply is one JSON object per line (:func:`messages`).  The interpreter fingerprint
(:func:`fingerprint`) is what the server compares with its own before it accepts a request.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import sys

ENV = "NNXAI_WORKER"
DISABLE_ENV = "NNXAI_NO_WORKER"
#: Environment variables that may differ between the server and a job: replayed in the child (thread
#: counts, temporary folder) or read by nnxai only at call time (``NNXAI_*``) or not read (the shell's own).
REPLAYED_ENV = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "TMPDIR", "TMP", "TEMP", "TEMPDIR",
                "PWD", "OLDPWD", "SHLVL", "_")
RELAYED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
KILL_GRACE = 3.0          # seconds between SIGTERM and SIGKILL of a job whose client vanished
_FLAGS = ("debug", "inspect", "interactive", "optimize", "dont_write_bytecode", "no_user_site", "no_site",
          "ignore_environment", "verbose", "bytes_warning", "quiet", "hash_randomization", "isolated",
          "dev_mode", "utf8_mode", "warn_default_encoding", "safe_path", "int_max_str_digits")
HEADER = struct.Struct("!I")


def _flags() -> dict:
    return {name: getattr(sys.flags, name, None) for name in _FLAGS}


def fingerprint() -> dict:
    """What makes a fresh interpreter run differently: the server refuses requests that differ."""
    return {"executable": sys.executable, "path": sys.path[1:], "flags": _flags(),
            "warnoptions": list(sys.warnoptions), "xoptions": {k: str(v) for k, v in sys._xoptions.items()}}


def messages(sock: socket.socket):
    """The JSON objects that arrive on ``sock``, one per line, until it closes."""
    buffer = b""
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)
        chunk = sock.recv(65536)
        if not chunk:
            return
        buffer += chunk
