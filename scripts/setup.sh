#!/usr/bin/env bash
# Idempotent setup: system packages, .venv with the package, torch only when missing,
# and DeepSpeed's AsyncIO op built once (cached in ~/.cache/torch_extensions).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
log() { printf '[setup] %s\n' "$*" >&2; }

# --- system packages (fio, libaio headers for DeepSpeed's aio op, nvme-cli for SMART) -------------
need=()
command -v fio >/dev/null 2>&1 || need+=(fio)
[ -e /usr/include/libaio.h ] || need+=(libaio-dev)
command -v nvme >/dev/null 2>&1 || need+=(nvme-cli)
# PostgreSQL server binaries: only the project's own tests need them (they start a throwaway cluster for the
# history store); the plugin and README command 1 need none, so only scripts/test.sh asks (NVME_AI_SETUP_TESTS=1).
if [ "${NVME_AI_SETUP_TESTS:-0}" = 1 ]; then
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing ${need[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${need[@]}" >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    log "installing ${need[*]} with sudo apt-get"
    sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    log "WARNING: missing ${need[*]} and not root: install them (apt-get install ${need[*]}); tests needing them will skip"
  fi
fi

# --- virtual environment -------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  if "$PY" -c "import torch" >/dev/null 2>&1; then
    # A runner that already has torch (e.g. a CUDA build) keeps it: the venv sees system packages.
    log "creating .venv (with system site-packages: found torch $("$PY" -c 'import torch; print(torch.__version__)'))"
    "$PY" -m venv --system-site-packages .venv
  else
    log "creating .venv"
    "$PY" -m venv .venv
  fi
fi
VPY=.venv/bin/python
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  # torch==2.13.0 resolves to the local CPU wheel on the build machines; plain `torch` would pull GBs of CUDA.
  log "installing torch==2.13.0"
  "$VPY" -m pip install -q torch==2.13.0
fi
stamp=.venv/.nvme-ai-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "installing pytest-nvme-ai and its dependencies into .venv"
  "$VPY" -m pip install -q --upgrade pip >/dev/null
  "$VPY" -m pip install -q -e ".[inference,dev]"
  touch "$stamp"
fi

# --- the KV-cache suite's own environment (.venv-kv: LMCache pins an older numpy than .venv's) ---------
if [ "${NVME_AI_SKIP_KV:-0}" != 1 ]; then
  bash scripts/setup_kv.sh || log "WARNING: .venv-kv (LMCache) not ready; the KV-cache suite will skip with the reason"
fi

# --- DeepSpeed ops (AsyncIO, CPU comm): JIT-compiled on first use (minutes); here, visibly, once ---
if [ "${NVME_AI_SKIP_AIO_BUILD:-0}" != 1 ]; then
  "$VPY" -m pytest_nvme_ai.measure.deepspeed.ops || log "WARNING: a DeepSpeed op (AsyncIO, CPU comm) did not build; aio and NVMe-offload tests will skip or fail with the reason"
fi
log "ready: .venv"
