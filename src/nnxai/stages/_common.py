"""What every stage shares: the log, and sweeping the temporary files a killed run of its outputs left."""

from __future__ import annotations

import logging
from pathlib import Path

from nnxai.io import sweep_stale_temp

log = logging.getLogger("nnxai")


def sweep(workdir: Path, outputs: list[str]) -> None:
    """Remove what a killed earlier run of these outputs left: their stale temporary files."""
    for path in sweep_stale_temp(Path(workdir) / rel for rel in outputs):
        log.info("removed %s, left by an interrupted run", path)
