"""``python -m nnxai.worker``: ``serve`` (run a server, see :mod:`nnxai.worker`) or ``ping`` one."""

from __future__ import annotations

import nnxai.worker
from nnxai.worker.client import ping
from nnxai.worker.preload import PRELOAD
from nnxai.worker.server import ENTRY, serve


def main(argv: list[str] | None = None) -> int:
    import argparse

    description = nnxai.worker.__doc__.splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m nnxai.worker", description=description)
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
