"""What the inference workers' fork server imports once, so that each forked worker starts with it.

This module is imported only by the fork server (zygote.py, through multiprocessing's
`set_forkserver_preload`), never by pytest: its whole point is the heavy imports at module level,
which the package otherwise keeps inside functions. On this machine they take 7-8 s: torch,
DeepSpeed, and transformers' modeling code (which `import transformers` alone defers to the first
model built: 4 of those seconds). Nothing here starts a thread pool or touches an accelerator, so a
fork afterwards is safe (zygote.py forks only for the CPU accelerator).

The fork server's own stdout and stderr go to /dev/null: DeepSpeed prints an accelerator warning
on import, and the server inherits pytest's terminal, past pytest's capture. Each forked worker
points both at its own log before it does anything (worker.forked_main).
"""
from __future__ import annotations

import os
import time

_devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(_devnull, 1)
os.dup2(_devnull, 2)
os.close(_devnull)

_t0 = time.monotonic()
import deepspeed  # noqa: E402,F401 - the point of this module
import torch  # noqa: E402,F401
import transformers  # noqa: E402,F401
import transformers.modeling_utils  # noqa: E402,F401 - the lazily imported bulk of a model build
import transformers.models.opt.modeling_opt  # noqa: E402,F401 - the shipped configs are OPT
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402,F401

from pytest_nvme_ai.measure.zero_inference import worker  # noqa: E402,F401 - the forked workers' code

# Seconds the imports took in the fork server: paid once per session instead of once per worker.
PRELOAD_S = time.monotonic() - _t0
