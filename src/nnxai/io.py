"""File output that survives interrupts, and file input that names the file when it is wrong.

Output: every result is written to a temporary file beside its target, ``.<name>.<random>.tmp``, then
renamed.  A crash, an interrupt or a ``kill -9`` therefore never leaves a half-written checkpoint,
explanation or table under the target's name, and an earlier complete file stays in place until its
replacement is whole.  The temporary names match :data:`TEMP_GLOB`, which ``.dvcignore`` and ``.gitignore``
ignore; a stage removes the stale ones of its own outputs when it starts (:func:`sweep_stale_temp`).

Input: a file that is missing, truncated, of the wrong kind or that fails its integrity or content
checks raises :class:`BadFileError` (or :class:`MissingFileError`), whose message names the file, says
what is wrong and what to do (:func:`rerun_hint`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

_UMASK = os.umask(0)
os.umask(_UMASK)

#: Glob of the temporary files of :func:`atomic_open` (ignored by DVC and git; see .dvcignore).
TEMP_GLOB = ".*.tmp"
#: When this process imported the module: a temporary file older than this belongs to no live writer of ours.
PROCESS_START = time.time()
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class BadFileError(ValueError):
    """A file is missing, truncated, of the wrong kind, or fails its integrity or content checks.

    The message is ``<path>: <problem>; <what to do>``; ``path`` and ``problem`` are kept as attributes.
    """

    def __init__(self, path: str | Path, problem: str, fix: str | None = None):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}; {fix or rerun_hint(path)}")


class MissingFileError(BadFileError, FileNotFoundError):
    """A file the stage reads does not exist (also a :class:`FileNotFoundError`)."""


_PATTERNS = (  # the output paths of DESIGN.md, and how each is made
    (re.compile(r"data/prepared/(?P<d>[^/]+)/[^/]+$"), "prepare_data", "nnxai prepare --dataset {d}"),
    (re.compile(r"data/checkpoints/(?P<d>[^/]+)/(?P<m>[^/]+)\.(pt|json)$"), "train_model",
     "nnxai train --dataset {d} --model {m}"),
    (re.compile(r"data/explanations/(?P<d>[^/]+)/(?P<m>[^/]+)/(?P<x>[^/]+)\.(npz|json)$"), "explain",
     "nnxai explain --dataset {d} --model {m} --method {x}"),
    (re.compile(r"data/metrics/(?P<d>[^/]+)/(?P<m>[^/]+)/[^/]+\.json$"), "evaluate",
     "nnxai evaluate --dataset {d} --model {m}"),
)


def rerun_hint(path: str | Path) -> str:
    """What to do about a bad output file: delete it and rerun the stage that writes it.

    For a path of DESIGN.md's layout the stage is named (a Snakemake target and the ``nnxai`` command);
    for any other path the advice is generic.
    """
    posix = Path(path).as_posix()
    for pattern, _rule, command in _PATTERNS:
        found = pattern.search(posix)
        if found:
            target = posix[found.start():]
            if target.startswith("data/checkpoints/") and target.endswith(".json"):
                target = target[:-len(".json")] + ".pt"
            return (f"delete it and rerun the stage that writes it: `snakemake --cores 2 --forcerun {target}` "
                    f"(or `{command.format(**found.groupdict())}`)")
    return "delete it and rerun the stage that writes it (`snakemake --cores 2 --forcerun <file>`)"


# --- output -----------------------------------------------------------------------------------------

_HELD_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT") if hasattr(signal, name))


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGTERM and Ctrl-C wait until the block ends, then run the handlers they would have run: the
    temporary file's creation and the record of its name are one step, so an interrupt never leaves a
    temporary file whose name nobody holds.  (Python-level, not ``pthread_sigmask``: torch's threads would
    receive a blocked process-directed signal and the main thread would still run its handler at once.)"""
    if threading.current_thread() is not threading.main_thread():
        yield                       # only the main thread runs signal handlers
        return
    pending: list[tuple[int, Any]] = []
    previous = {}
    try:
        for signum in _HELD_SIGNALS:
            previous[signum] = signal.signal(signum, lambda number, frame: pending.append((number, frame)))
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum, frame in pending[:1]:
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = tmp = None
    try:
        with _signals_held():    # a signal arriving here is raised when the block ends, inside this try
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are ordinary files
        handle = os.fdopen(fd, mode)
        fd = None                       # the handle owns it now
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as stable, sorted, indented JSON (same object, same bytes)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")


def temp_files(target: str | Path) -> list[Path]:
    """The temporary files :func:`atomic_open` makes (or left behind) for ``target``."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    return sorted(p for p in target.parent.glob(f".{glob_escape(target.name)}.*.tmp") if p.is_file())


def glob_escape(name: str) -> str:
    """``name`` with the glob metacharacters ``*?[`` quoted."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def sweep_stale_temp(targets: Iterable[str | Path], older_than: float | None = None) -> list[Path]:
    """Remove the temporary files of ``targets`` that a killed run left behind; return them.

    Only files named like :func:`atomic_open`'s temporaries *of these targets* and last modified before
    ``older_than`` (default: this process's start) are removed, so the live temporaries of a concurrent
    job writing another file of the same folder are never touched.
    """
    cutoff = PROCESS_START if older_than is None else older_than
    removed = []
    for target in targets:
        for tmp in temp_files(target):
            with contextlib.suppress(FileNotFoundError):
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed.append(tmp)
    return removed


# --- input ------------------------------------------------------------------------------------------

def require_file(path: str | Path, what: str = "file", fix: str | None = None) -> Path:
    """``path`` as a Path if it is a regular file; a :class:`MissingFileError` (or a :class:`BadFileError`
    for a folder) naming it otherwise."""
    path = Path(path)
    if path.is_dir():
        raise BadFileError(path, f"expected a {what}, found a folder", fix)
    if not path.is_file():
        raise MissingFileError(path, f"{what} does not exist", fix)
    return path


def read_bytes(path: str | Path, what: str = "file", fix: str | None = None) -> bytes:
    """The bytes of ``path``; typed errors for a missing or unreadable file."""
    path = require_file(path, what, fix)
    try:
        return path.read_bytes()
    except OSError as err:
        raise BadFileError(path, f"{what} cannot be read ({err.strerror or err})", fix) from err


def read_json(path: str | Path, what: str = "JSON file", fix: str | None = None) -> Any:
    """Parse a JSON file; :class:`BadFileError` names the file when it is missing, binary or malformed."""
    raw = read_bytes(path, what, fix)
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        kind = " (it looks like a zip/npz archive)" if raw[:4] in _ZIP_MAGIC else ""
        raise BadFileError(path, f"{what} is not text{kind}", fix) from err
    except json.JSONDecodeError as err:
        problem = "is empty" if not raw.strip() else f"is not valid JSON ({err.msg} at line {err.lineno})"
        raise BadFileError(path, f"{what} {problem}", fix) from err


def read_json_object(path: str | Path, what: str = "JSON file", fix: str | None = None) -> dict:
    """:func:`read_json`, and the document must be a JSON object."""
    doc = read_json(path, what, fix)
    if not isinstance(doc, dict):
        raise BadFileError(path, f"{what} holds a JSON {type(doc).__name__}, expected an object", fix)
    return doc


def check_zip_magic(path: str | Path, head: bytes, what: str, fix: str | None = None) -> None:
    """Refuse a file that is not a zip archive (an npz or a torch checkpoint), naming what it looks like."""
    if head[:4] in _ZIP_MAGIC:
        return
    if not head:
        raise BadFileError(path, f"{what} is empty (0 bytes)", fix)
    looks = "holds JSON/text, not a zip archive" if head.lstrip()[:1] in (b"{", b"[", b'"') else "is not a zip archive"
    raise BadFileError(path, f"{what} {looks} (first bytes {head[:8]!r})", fix)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_json(obj: Any) -> bytes:
    """Compact, key-sorted JSON bytes of ``obj``: the same record whatever order it was built in (what
    digests of records are taken over, and what a checkpoint's record is rebuilt from)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()
