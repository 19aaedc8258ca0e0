"""``python -m nnxai``: the command line (:mod:`nnxai.cli`).

When ``$NNXAI_WORKER`` names a persistent worker (the Snakefile starts one for local runs), the call is
forwarded to it and runs in a warm fork that has torch and the registries imported already
(:mod:`nnxai.worker`); when there is none, it declines, or ``NNXAI_NO_WORKER=1``, it runs here.
"""

import os
import sys


def _main() -> int:
    if os.environ.get("NNXAI_WORKER"):
        from nnxai.worker import client       # light: no torch, no server modules

        path = client.enabled()
        status = client.forward(path, sys.argv[1:]) if path else None
        if status is not None:
            return status
    from nnxai.cli import main

    return main()


if __name__ == "__main__":
    raise SystemExit(_main())
