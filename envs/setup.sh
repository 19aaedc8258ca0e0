#!/usr/bin/env bash
# Set up the project's Python environment and link it as ./.venv.
#
#   bash envs/setup.sh                       create or reuse the environment, install nnxai from this checkout
#   NNXAI_EXTRAS=test,slurm bash envs/setup.sh   the same with the SLURM executor plugin (configs/slurm/)
#   NNXAI_EXTRAS=test,bench bash envs/setup.sh   the same with Quantus, for benchmarks/ (a separate environment)
#   NNXAI_NO_TEX=1 bash envs/setup.sh        without TeX Live (envs/tex.sh, called last, installs it with apt)
#
# The default extras are `test` (pytest).  The `slurm` extra is opt-in because the executor plugin asks
# `scontrol show config` for MinJobAge when Snakemake starts: on a machine where SLURM is installed but its
# controller is down, that waits 9 s on every `snakemake` call, a no-op rerun included.
#
# The environment lives outside the clone, in $NNXAI_ENV_CACHE (default ~/.cache/nnxai), under a name
# derived from pyproject.toml and this script: a fresh clone reuses it as long as neither changed, and a
# change of either builds a new one.  torch/torchvision are pinned in pyproject.toml (2.14.1 / 0.29.1).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
cache=${NNXAI_ENV_CACHE:-$HOME/.cache/nnxai}

"$python" -c 'import sys; assert (3, 11) <= sys.version_info[:2] < (3, 13), sys.version' 2>/dev/null || {
  echo "envs/setup.sh: needs Python 3.11 or 3.12 as \$PYTHON (got: $("$python" --version 2>&1))" >&2; exit 1; }

extras=${NNXAI_EXTRAS:-test}
case "$extras" in *[!a-z,]*|"") echo "envs/setup.sh: NNXAI_EXTRAS must be a comma list of extras (test,slurm,bench), got '$extras'" >&2; exit 1;; esac
key=$( (cat "$root/pyproject.toml" "$root/envs/setup.sh"; echo "$extras") | sha256sum | cut -c1-16)
venv="$cache/venv-$key"

if [ ! -f "$venv/.complete" ]; then
  echo "envs/setup.sh: building $venv (a few minutes; torch comes from the local wheel cache)" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "setuptools>=68" wheel
  # Dependencies (and the extras) from pyproject.toml; the package itself is re-linked below.
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$root[$extras]"
  touch "$venv/.complete"
fi

# Point the (possibly shared) environment at this checkout's sources: pip's editable install gives the
# metadata and the `nnxai` script, and its .pth the path of the clone that ran this last.  Clones share the
# environment, so the .pth also puts first the sources of the clone whose `.venv` link started Python
# (sys.prefix is that link): `<clone>/.venv/bin/python` always runs `<clone>/src`.
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$root"
for pth in "$venv"/lib/python*/site-packages/__editable__.nnxai-*.pth; do
  printf '%s\n%s\n' "$root/src" \
    'import os, sys; _src = os.path.join(os.path.dirname(sys.prefix), "src"); os.path.isfile(os.path.join(_src, "nnxai", "__init__.py")) and sys.path.insert(0, _src)' \
    > "$pth"
done
ln -sfn "$venv" "$root/.venv"
echo "envs/setup.sh: ready: $root/.venv -> $venv" >&2

# TeX Live for the paper (the rule build_paper: paper/main.pdf) and pdftotext for its tests, installed with
# apt when missing (envs/tex.sh; root or sudo).  NNXAI_NO_TEX=1 skips it; without TeX, a run that would
# build the PDF stops before its first job and says what to do.
if [ -z "${NNXAI_NO_TEX:-}" ]; then
  bash "$root/envs/tex.sh" || echo "envs/setup.sh: warning: TeX Live is missing (envs/tex.sh failed): paper/main.pdf will" \
    "not build; \`snakemake --cores 2 evaluate_all report_all\` runs everything else" >&2
fi
