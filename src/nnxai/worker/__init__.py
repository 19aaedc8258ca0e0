"""A persistent worker for the jobs of one workflow run: fork a warm process instead of starting Python.

Each Snakemake job is one ``python -m nnxai <stage>`` call, and a fresh interpreter spends ~4 s importing
torch, captum and the registries before any work.  The worker (a "zygote" fork server) imports them once;
``python -m nnxai`` finds it through ``$NNXAI_WORKER`` (a Unix socket) and becomes a thin client:

1. the client sends its argv, working directory, environment, umask and interpreter fingerprint, with its
   stdin/stdout/stderr file descriptors (``SCM_RIGHTS``), and imports nothing heavy (~30 ms in all);
2. the server checks that a fresh process would run the same code the same way (same interpreter, path
   and flags; unchanged ``nnxai`` sources; no environment difference other than those it replays, see
   :data:`~nnxai.worker.protocol.REPLAYED_ENV`), else it declines and the client runs the stage in-process
   as before;
3. it forks; the child leads its own process group, takes the client's descriptors as 0/1/2, its
   directory, environment, umask and argv, the per-process state a fresh interpreter would have (RNG
   seeds, thread pools sized from ``OMP_NUM_THREADS`` & co., :mod:`nnxai.io`'s start time and umask),
   runs ``nnxai.cli.main(argv)`` and exits with its status, which the server sends back to the client;
4. the client relays SIGTERM/SIGINT/SIGHUP to the child's group and exits as the child did (a status, or
   the same signal); if the client vanishes (SIGKILL), the child gets SIGTERM (unwinding removes its
   temporary files, see :mod:`nnxai.cli`), then SIGKILL after :data:`~nnxai.worker.protocol.KILL_GRACE`
   seconds.

Every output is written by the same code from the same inputs, so results are bit for bit those of a
fresh process (tests/test_worker.py, and the smoke fingerprint of tests/test_e2e_smoke.py, which runs
through the worker).  The server is single-threaded (one ``selectors`` loop, SIGCHLD through a wakeup
fd), never runs a torch operation nor touches CUDA, so each fork starts from a clean point.  It exits
when its parent (the Snakemake process) is gone -- after its running jobs -- or when idle for
``--idle-timeout`` seconds; when an ``nnxai`` source it imported changes, it re-executes itself once idle.

The Snakefile starts it for local runs (:func:`~nnxai.worker.lifecycle.start_for_workflow`, not for cluster
executors, dry runs or ``--use-conda``); ``NNXAI_NO_WORKER=1`` turns it off.  By hand::

    python -m nnxai.worker serve --socket /tmp/w.sock &   NNXAI_WORKER=/tmp/w.sock python -m nnxai ...

The modules, one job each: :mod:`~nnxai.worker.protocol` (the environment names, message framing and
interpreter fingerprint both sides share), :mod:`~nnxai.worker.client` (what ``python -m nnxai`` runs),
:mod:`~nnxai.worker.server` (preload, then the serve loop: accept, decline, fork, reap, reload),
:mod:`~nnxai.worker.child` (what a forked child resets before it runs the call) and
:mod:`~nnxai.worker.lifecycle` (starting and stopping a server, for the Snakefile).  Importing this package
loads only the first two (the client's path stays light); the lifecycle names load on first use.
"""

from __future__ import annotations

from nnxai.worker.client import enabled, forward, ping
from nnxai.worker.protocol import DISABLE_ENV, ENV

#: Names of :mod:`nnxai.worker.lifecycle`, imported on first use (PEP 562) so that the client does not load it.
_LIFECYCLE = ("Handle", "start", "stop", "start_for_workflow", "why_not_for")

__all__ = ["DISABLE_ENV", "ENV", "enabled", "forward", "ping", *_LIFECYCLE]


def __getattr__(name: str):
    if name in _LIFECYCLE:
        from nnxai.worker import lifecycle

        return getattr(lifecycle, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LIFECYCLE))
