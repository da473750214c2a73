#!/usr/bin/env bash
# Create .venv (if absent) and install the pinned requirements into it.
#   bash scripts/setup.sh          runtime packages (requirements.txt)
#   bash scripts/setup.sh --dev    plus test and lint tools (requirements-dev.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install --quiet -r requirements-dev.txt
else
  .venv/bin/python -m pip install --quiet -r requirements.txt
fi
.venv/bin/python -m pip check
