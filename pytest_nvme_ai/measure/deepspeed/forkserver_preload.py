"""Runs in the fork server only: what it imports once, so that each forked worker starts with it.

This module is imported only by the fork server (forkserver.py, through multiprocessing's
`set_forkserver_preload`), never by pytest: its whole point is the heavy imports at module level,
which the package otherwise keeps inside functions. On this machine they take 7-8 s: torch,
DeepSpeed, and transformers' modeling code (which `import transformers` alone defers to the first
model built: 4 of those seconds). Nothing here starts a thread pool or touches an accelerator, so a
fork afterwards is safe (forkserver.py forks only for the CPU accelerator). The workload's worker
module is preloaded after this one (the caller of ForkServer.start/fork names it).

Before importing, the server:
- leaves pytest's process group (setsid). A SIGTERM or Ctrl-C sent to that group (a cancelled CI
  job, GNU timeout) would otherwise kill the server first. The pool would then read its forked
  workers' status as lost while they still run. The server still exits with pytest: it watches
  pytest's end of a pipe.
- points its stdout and stderr at /dev/null. DeepSpeed prints an accelerator warning on import, and
  the server inherits pytest's terminal, past pytest's capture. Each forked worker points both at
  its own log before it does anything (e.g. zero_inference.remote_worker.forked_main). An import that fails here is not lost:
  the worker imports for itself, and its log shows the error.
- sets the hub-offline defaults an exec'd worker sets before its imports (huggingface_hub reads
  them at import).
"""
from __future__ import annotations

import os

try:
    os.setsid()
except OSError:  # already a session leader
    pass
_devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(_devnull, 1)
os.dup2(_devnull, 2)
os.close(_devnull)
for _key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_key, "1")  # as remote.setup_single_process_env: never reach for a hub

import deepspeed  # noqa: E402,F401 - the point of this module
import torch  # noqa: E402,F401
import transformers  # noqa: E402,F401
import transformers.modeling_utils  # noqa: E402,F401 - the lazily imported bulk of a model build
import transformers.models.opt.modeling_opt  # noqa: E402,F401 - the shipped configs are OPT
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402,F401
