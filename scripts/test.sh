#!/usr/bin/env bash
# README command 2 (and .ci/run): set everything up, then run the project's own tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser test skips with the reason when chromium cannot be installed (e.g. not root).
bash scripts/install_chromium.sh || echo "[test] WARNING: chromium not installed; the browser test will skip" >&2
exec .venv/bin/python -m pytest tests/ -p no:cacheprovider -rs --timeout=1800 "$@"
