#!/usr/bin/env bash
# README command 1: set everything up, then run the suites on the embedded default target
# (or on the targets given as arguments / in NVME_AI_TARGET). Writes reports/<run-id>/ and reports/latest.
# Extra pytest arguments pass through: scripts/run-suite.sh --nvme-ai-target /mnt/nvme0 --nvme-ai-profile standard
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest suites/ -p no:cacheprovider -rs "$@"
