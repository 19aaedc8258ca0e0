"""Fingerprint of a smoke run's results: what must stay bit for bit the same when code is reorganised.

Covered: ``data/metrics/all.csv`` (every row but the measured ``runtime``), every table (Markdown and
LaTeX; the comparison table with its measured seconds-per-input columns blanked), every prepared split
and explanation record (arrays byte for byte; the ``meta`` record without its timings and library
versions).  Not covered: figures (rendered pixels), logs, checkpoint bytes (their records carry the code
version), timings.

    python tests/smoke_fingerprint.py RUN_DIR                  print the fingerprint of a finished smoke run
    python tests/smoke_fingerprint.py RUN_DIR --write          store it as the golden one (tests/golden/)

The end-to-end test compares its own smoke run with the golden fingerprint; a change of results on purpose
(a method fixed, a metric added) rewrites it with ``--write`` in the same commit, and says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).resolve().parent / "golden" / "smoke_fingerprint.json"
TIMING_KEYS = {"seconds", "seconds_per_input", "versions", "sha256"}   # sha256: the record's own digest (of what is hashed here)
TIMED_TABLE = "table_comparison"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:20]


def _meta(meta: dict) -> bytes:
    return json.dumps({k: v for k, v in meta.items() if k not in TIMING_KEYS}, sort_keys=True).encode()


def _npz(path: Path) -> str:
    with np.load(path, allow_pickle=False) as z:
        parts = []
        for name in sorted(z.files):
            value = z[name]
            if name == "meta":
                parts.append(_meta(json.loads(str(value))))
            else:
                parts.append(name.encode() + str(value.dtype).encode() + str(value.shape).encode() + value.tobytes())
    return _sha(b"\0".join(parts))


def _json_record(path: Path) -> str:
    record = json.loads(path.read_text())
    record["meta"] = json.loads(_meta(record.get("meta", {})))
    return _sha(json.dumps(record, sort_keys=True).encode())


def _csv(path: Path) -> str:
    lines = [line for line in path.read_text().splitlines() if line.split(",")[3:4] != ["runtime"]]
    return _sha("\n".join(lines).encode())


def _table(path: Path) -> str:
    text = path.read_text()
    if path.stem == TIMED_TABLE:   # measured seconds per input: blank every duration
        text = re.sub(r"\d+(\.\d+)?(e[+-]?\d+)?\s*(ms|s|µs|\$\\mu\$s|min)(?!\w)", "<t>", text)   # LaTeX: $\mu$s
    return _sha(text.encode())


def fingerprint(run: Path) -> dict[str, str]:
    run = Path(run)
    out = {"data/metrics/all.csv": _csv(run / "data/metrics/all.csv")}
    for path in sorted((run / "paper/tables").glob("*.*")):
        out[str(path.relative_to(run))] = _table(path)
    for path in sorted((run / "data/prepared").rglob("*.npz")):
        out[str(path.relative_to(run))] = _npz(path)
    for path in sorted((run / "data/explanations").rglob("*")):
        if path.suffix == ".npz":
            out[str(path.relative_to(run))] = _npz(path)
        elif path.suffix == ".json":
            out[str(path.relative_to(run))] = _json_record(path)
    return out


def differences(found: dict[str, str], golden: dict[str, str]) -> list[str]:
    """Files missing, extra or changed, one line each."""
    lines = [f"missing: {p}" for p in sorted(set(golden) - set(found))]
    lines += [f"new: {p}" for p in sorted(set(found) - set(golden))]
    lines += [f"changed: {p}" for p in sorted(set(found) & set(golden)) if found[p] != golden[p]]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="work directory of a finished smoke run")
    parser.add_argument("--write", action="store_true", help=f"store as the golden fingerprint ({GOLDEN})")
    args = parser.parse_args(argv)
    found = fingerprint(args.run)
    if args.write:
        GOLDEN.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN} ({len(found)} files)")
        return 0
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    diff = differences(found, golden)
    print("\n".join(diff) if diff else f"identical to the golden fingerprint ({len(found)} files)")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
