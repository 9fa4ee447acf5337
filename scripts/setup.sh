#!/usr/bin/env bash
# Create ./.venv with claptune installed in editable mode plus its dev extras.
# Installs the CPU build of torch first where the local wheel folder has it, so pip does not
# pull several GB of CUDA packages; a machine with a GPU can install its own torch beforehand.
#   scripts/setup.sh                    claptune + dev tools, versions pinned by constraints.txt
#   scripts/setup.sh --with-reference   + aisfx 0.1.2, only for the test that compares the
#                                       vendored default-model CNN with aisfx's own
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
$VPY -m pip install -q --upgrade pip
if ! $VPY -c "import torch" 2>/dev/null; then
  $VPY -m pip install -q "torch==2.13.*" || $VPY -m pip install -q torch
fi
$VPY -m pip install -q -c constraints.txt -e ".[dev]"
if [ "${1:-}" = "--with-reference" ]; then
  # aisfx pins ancient versions of its dependencies (numpy 1.23, librosa 0.9); the test needs
  # only its network code and checkpoint, so it is installed without them.
  $VPY -m pip install -q --no-deps "aisfx==0.1.2"
fi
echo "claptune set up in $(pwd)/.venv"
