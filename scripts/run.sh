#!/usr/bin/env bash
# Set up .venv (first time) and start the app; arguments go to app.py (see python app.py --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python app.py "$@"
