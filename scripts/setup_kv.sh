#!/usr/bin/env bash
# Idempotent: the KV environment (.venv-kv/) for the KV-cache suite's children (measure/kv_cache).
#
# LMCache 0.5.6 pins numpy<=2.2.6, setuptools<81 and protobuf/opentelemetry ranges, and pulls CUDA
# wheels (cupy-cuda13x, cuda-python) even on CPU: installed into .venv it would downgrade the numpy
# every other suite measures with. So it gets its own environment with the same torch wheel; the suite
# runs its children with .venv-kv/bin/python (override: NVME_AI_KV_PYTHON) and skips, saying so, without it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
log() { printf '[setup_kv] %s\n' "$*" >&2; }

# torch==2.13.0 resolves to the local CPU wheel on the build machines (plain `torch` pulls GBs of CUDA);
# transformers as in .venv, so the serving case's model code is the one the other suites run.
PINS=(torch==2.13.0 transformers==5.25.0 lmcache==0.5.6)
stamp=.venv-kv/.nvme-ai-kv-installed

if [ ! -x .venv-kv/bin/python ]; then
  log "creating .venv-kv"
  "$PY" -m venv .venv-kv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${PINS[*]}" ]; then
  log "installing ${PINS[*]} into .venv-kv (LMCache's dependencies take a few minutes)"
  .venv-kv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv-kv/bin/python -m pip install -q "${PINS[@]}"
  printf '%s' "${PINS[*]}" > "$stamp"
fi
# The children import this checkout through PYTHONPATH (the runner sets it): nothing of ours is installed here.
LMCACHE_TRACK_USAGE=false DO_NOT_TRACK=1 .venv-kv/bin/python -c \
  "import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in ('lmcache', 'torch', 'transformers')) else 1)" \
  || { log "ERROR: .venv-kv lacks lmcache, torch or transformers: remove .venv-kv and run again"; exit 1; }
log "ready: .venv-kv"
