"""Errors of a ZeRO-Inference spec, in their own module so that `spec` and `models` can both raise them
without importing each other both ways."""
from __future__ import annotations


class SpecError(ValueError):
    """The spec itself is invalid."""


class SpecNotApplicable(SpecError):
    """The spec is valid but cannot run on this accelerator (a skip, not a failure)."""
