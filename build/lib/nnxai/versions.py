"""Library and code versions, recorded in every checkpoint and explanation."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path

_PACKAGES = ("nnxai", "torch", "numpy", "captum", "scikit-learn", "scipy")


def package_versions(names) -> dict[str, str]:
    """Installed version of each distribution in ``names`` (``"absent"`` when not installed)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape every result (recorded in checkpoints and explanations)."""
    return package_versions(_PACKAGES)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The package version plus the git commit of the source tree when there is one (``-dirty`` if edited)."""
    version = library_versions()["nnxai"]
    src = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(src), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "."], capture_output=True,
                               text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}{'.dirty' if dirty else ''}"
