#!/usr/bin/env bash
# README command 2 (and .ci/run): set everything up, then run the project's own tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f scripts/install_chromium.sh ]; then bash scripts/install_chromium.sh; fi
exec .venv/bin/python -m pytest tests/ -p no:cacheprovider -rs --timeout=1800 "$@"
