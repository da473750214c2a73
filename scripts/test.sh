#!/usr/bin/env bash
# The project's test command (README): set up .venv with the dev requirements, lint, run pytest.
# Browser tests need Debian's chromium (/usr/bin/chromium) and are skipped without it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
