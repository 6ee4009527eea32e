"""DeepSpeed aio settings of the ZeRO-Inference runs."""
from __future__ import annotations

from pytest_nvme_ai.run.settings.base import Setting

ORDER = 30


def _aio(v: str) -> str:
    """'default', 'auto' or a JSON aio block, checked now so a typo stops the run before any test."""
    s = str(v).strip()
    if s not in ("default", "auto"):
        from pytest_nvme_ai.measure.deepspeed.config_blocks import AioSettingError, parse_aio_json  # light: json + packaging

        try:
            parse_aio_json(s)
        except AioSettingError as exc:
            raise ValueError(str(exc)) from None
    return s


SETTINGS = (
    Setting("aio", "aio settings for ZeRO-Inference runs: 'default' (DeepSpeed's), 'auto' (tune the target first) "
            "or a JSON aio block.", _aio, "default", metavar="auto|default|JSON"),
)
