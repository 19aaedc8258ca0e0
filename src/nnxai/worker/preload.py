"""What the server of :mod:`nnxai.worker` imports before it forks, and whether forking is then safe.

Jobs import torch, captum, the registries and the libraries that methods, metrics and report writers use
inside their functions; the server imports them once (:data:`PRELOAD`) and fills the registries, so that
each fork finds them ready.  It must not have started threads or CUDA meanwhile (:func:`fork_hazard`).
"""

from __future__ import annotations

import sys

#: Modules the server imports once, because jobs import them: torch alone costs ~2 s; torch.optim imports
#: torch._dynamo on a first step (~1 s); the methods, metrics and report writers import scikit-learn,
#: SciPy, pandas, scikit-image, seaborn and plotly inside their functions; torch._dynamo's exit handler
#: imports tabulate (0.13 s at the end of every job); torch.load imports torch.utils.serialization (15 ms).
PRELOAD = ("torch", "torch._dynamo", "torch.utils.serialization", "tabulate", "captum.attr", "nnxai.cli",
           "nnxai.pipeline", "nnxai.config", "nnxai.workflow", "sklearn.cluster", "sklearn.datasets",
           "sklearn.ensemble", "sklearn.linear_model", "scipy.optimize", "scipy.stats", "scipy.ndimage",
           "skimage.segmentation", "pandas", "seaborn", "plotly.graph_objects")


def warm(modules, log) -> None:
    """Import ``modules`` (a missing one is left to its jobs) and fill the registries; ``log`` tells failures."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:      # an optional dependency: its jobs import it themselves
            log(f"not preloaded: {err}")
    if "nnxai.cli" in sys.modules:
        _fill_registries(log)


def fork_hazard() -> str | None:
    """Why forking this process would be unsafe, if it would (threads, or a CUDA driver loaded)."""
    import threading

    if threading.active_count() > 1:
        return f"an import started threads ({threading.enumerate()}): forking is unsafe; not serving"
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized() or _cuda_driver_loaded():
        return "an import loaded the CUDA driver: forking after CUDA starts is unsafe; not serving"
    return None


def _fill_registries(log) -> None:
    """Import what every job reads: the methods, metrics and report items, and the CLI parser's modules."""
    from nnxai import registry
    from nnxai.cli import _parser
    from nnxai.metrics import metrics
    from nnxai.report import REPORT_ITEMS

    registry.implemented_ids()
    metrics()
    list(REPORT_ITEMS.items())
    _parser()
    try:    # the parsed imports of nnxai's sources (cached by modification time), read by evaluate jobs
        from nnxai import codedeps

        for path in codedeps.closure(sorted(m for m in sys.modules
                                            if m.startswith("nnxai.") and codedeps.module_file(m))):
            codedeps._sha256(path)       # evaluate jobs hash these sources into their cache keys
    except Exception as err:   # an optional warm-up: jobs parse the sources themselves
        log(f"nnxai.codedeps not warmed: {err!r}")
    try:    # what every explain and train job records: the library versions (importlib.metadata reads)
        from nnxai.versions import library_versions

        library_versions()
    except Exception as err:   # an optional warm-up
        log(f"library versions not warmed: {err!r}")


def _cuda_driver_loaded() -> bool:
    """Whether libcuda is mapped (torch loads it on first CUDA use; the server must not have used CUDA)."""
    try:
        with open("/proc/self/maps") as maps:
            return any("libcuda.so" in line for line in maps)
    except OSError:
        return False
