#!/usr/bin/env bash
# TeX Live for the paper (paper/main.tex -> paper/main.pdf, the Snakemake rule build_paper) and pdftotext for
# its test: Debian's packages, installed with apt when missing (root or sudo).  Idempotent: where every tool
# and LaTeX package the paper uses is found, nothing is installed.  envs/setup.sh calls it.
#
#   bash envs/tex.sh          install what is missing (apt-get update first), then check
#   bash envs/tex.sh check    exit 1, naming what is missing, without installing
#
# Packages (--no-install-recommends):
#   latexmk texlive-latex-base texlive-latex-recommended texlive-fonts-recommended lmodern poppler-utils
set -euo pipefail

PACKAGES=(latexmk texlive-latex-base texlive-latex-recommended texlive-fonts-recommended lmodern poppler-utils)
TOOLS=(latexmk pdflatex kpsewhich pdftotext)
# Every package paper/main.tex and the generated tables load (tests/test_paper.py keeps this list whole).
STYLES=(geometry booktabs tabularx longtable array graphicx amsmath amssymb inputenc fontenc lmodern hyperref
        xcolor caption pdfpages)

say() { echo "envs/tex.sh: $*" >&2; }

missing() {
  local out=() tool style
  for tool in "${TOOLS[@]}"; do command -v "$tool" >/dev/null || out+=("$tool"); done
  if command -v kpsewhich >/dev/null; then
    for style in "${STYLES[@]}"; do [ -n "$(kpsewhich "$style.sty")" ] || out+=("$style.sty"); done
  fi
  echo "${out[@]:-}"
}

gone=$(missing)
if [ -z "$gone" ]; then say "ready: latexmk, pdflatex, pdftotext and the paper's LaTeX packages"; exit 0; fi
if [ "${1:-install}" = check ]; then say "missing: $gone"; exit 1; fi

if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo); else
  say "missing: $gone; installing them needs root or sudo: apt-get install ${PACKAGES[*]}"; exit 1; fi
command -v apt-get >/dev/null || { say "missing: $gone; no apt-get here: install TeX Live with latexmk and poppler's pdftotext"; exit 1; }

say "missing: $gone; installing ${PACKAGES[*]}"
"${SUDO[@]}" apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >&2
gone=$(missing)
if [ -n "$gone" ]; then say "still missing after the install: $gone"; exit 1; fi
say "ready: latexmk, pdflatex, pdftotext and the paper's LaTeX packages"
