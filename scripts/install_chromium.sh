#!/usr/bin/env bash
# Install Debian's chromium when it is missing, for tests/test_report_browser.py
# (headless Chromium: the report page must open with no console error and no network request).
#
# Idempotent: does nothing when a Chromium is already there (or NVME_AI_CHROMIUM names one).
# Needs root or password-less sudo to install; otherwise says what to run and exits 1.
# The browser tests skip (with this script named in the reason) when no Chromium is found,
# so a test command that tolerates failure can run:  scripts/install_chromium.sh || true; pytest
set -euo pipefail

log() { printf 'install_chromium: %s\n' "$*" >&2; }

if [[ -n "${NVME_AI_CHROMIUM:-}" && -x "${NVME_AI_CHROMIUM}" ]]; then
    log "using NVME_AI_CHROMIUM=${NVME_AI_CHROMIUM}"
    exit 0
fi
for name in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$name" >/dev/null 2>&1; then
        log "already installed: $(command -v "$name")"
        exit 0
    fi
done

if ! command -v apt-get >/dev/null 2>&1; then
    log "no apt-get here: install Chromium with your package manager, or set NVME_AI_CHROMIUM=/path/to/chrome"
    exit 1
fi

if [[ "$(id -u)" -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    log "not root and no password-less sudo: run 'sudo apt-get install -y chromium' yourself"
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
install() { "${SUDO[@]}" apt-get install -y --no-install-recommends chromium; }
# Try the package lists already on the machine first: no index download when they are fresh enough.
if ! install; then
    log "install from the current package lists failed; refreshing them (apt-get update) and retrying"
    "${SUDO[@]}" apt-get update
    install
fi
command -v chromium >/dev/null 2>&1 || { log "apt-get finished but no chromium on PATH"; exit 1; }
log "installed: $(command -v chromium) ($(chromium --version 2>/dev/null | tail -n1))"
