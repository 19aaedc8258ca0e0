"""Code as a dependency: the source files of :mod:`nnxai` that a job runs.

A job's code is the import closure of its entry modules: every ``nnxai`` module named by an ``import`` or
``from ... import`` statement (at module level or inside a function), transitively, with the packages
that contain them (importing ``nnxai.a.b`` runs ``nnxai/__init__.py`` and ``nnxai/a/__init__.py``).  The
registries' discovery of their packages (:class:`nnxai.registration.Registry` imports every module of
``nnxai.methods`` to find the registered classes) is not a dependency: a method's job depends on its own
module and what that imports, not on its siblings, so that editing one method's file reruns the jobs that
ran it (and their downstream) and nothing else, while editing shared code reruns everything that imports
it.

The Snakefile lists these files as inputs of each job (:func:`nnxai.workflow.code_inputs`), and
``dvc.yaml``'s ``deps`` come from the same function, so Snakemake and DVC agree on what a change reruns.
The analysis is static (:mod:`ast`), cached per file, and reads no module's code by importing it.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

PACKAGE = "nnxai"
SOURCE_ROOT = Path(__file__).resolve().parent.parent    # the folder that holds nnxai/ (src/)


#: Module name -> source file, of the modules found so far (a module that is not found is looked up again).
_FOUND: dict[str, Path] = {}


def module_file(module: str) -> Path | None:
    """The source file of an ``nnxai`` module or package, or ``None`` if it is not one."""
    found = _FOUND.get(module)
    if found is not None and found.is_file():
        return found
    base = SOURCE_ROOT / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            _FOUND[module] = candidate
            return candidate
    return None


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


#: Modules whose function-level imports are not followed: the CLI (and its argument checks) imports every
#: stage inside the subcommand that runs it, and a job runs one subcommand (its stage is a root instead).
SHALLOW = frozenset({"nnxai.cli", "nnxai.cli_checks"})


@lru_cache(maxsize=None)
def _direct_imports(path: Path, mtime_ns: int, shallow: bool = False) -> frozenset[str]:
    """``nnxai`` modules that the file at ``path`` imports (``mtime_ns``: part of the cache key); only
    those at module level when ``shallow``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in (tree.body if shallow else ast.walk(tree)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module or ""
            found.add(parent)
            found.update(f"{parent}.{alias.name}" for alias in node.names)   # `from pkg import module`
    return frozenset(m for m in found if (m == PACKAGE or m.startswith(PACKAGE + ".")) and module_file(m))


def _with_packages(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts) + 1)]


def closure(modules: Iterable[str]) -> list[Path]:
    """Source files of ``modules`` and of every ``nnxai`` module they import, transitively; sorted."""
    seen: set[str] = set()
    todo = [m for module in modules for m in _with_packages(module)]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module)
        if path is None:
            raise ValueError(f"{module!r} is not a module of {PACKAGE} (no file under {SOURCE_ROOT})")
        for imported in _direct_imports(path, path.stat().st_mtime_ns, module in SHALLOW):
            todo.extend(m for m in _with_packages(imported) if m not in seen)
    return sorted(module_file(m) for m in seen)


@lru_cache(maxsize=None)
def file_digests(modules: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``(path relative to the repository, sha256)`` of every source file of :func:`closure` ``(modules)``;
    cached per process: planning and evaluation ask for the same few hundred module sets many times, and
    a process does not outlive an edit of the sources it runs."""
    root = SOURCE_ROOT.parent
    return tuple((path.relative_to(root).as_posix(), _sha256(path)) for path in closure(modules))


@lru_cache(maxsize=None)
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def relative(paths: Iterable[Path], root: Path) -> list[str]:
    """``paths`` relative to ``root`` (the repository), as POSIX strings."""
    return [p.relative_to(root).as_posix() for p in paths]
