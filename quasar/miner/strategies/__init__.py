"""How the miner improves its kernel: ``tune`` (a search over the knobs the kernel declares), ``agent``
(LLM patches), ``manual`` (your edits).

MINER_STRATEGY picks one; :func:`make_strategy` builds it from the settings. The strategies load on
first use, so the tuner's pure parts (``search``, ``probe``) import without the miner's dependencies:
``scripts/gpu_tune.py`` and the sandboxed probe need only torch, triton and rich.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quasar.config import Settings
    from quasar.miner.strategies.agent import AgentStrategy
    from quasar.miner.strategies.base import Context, Outcome, Strategy
    from quasar.miner.strategies.manual import ManualStrategy
    from quasar.miner.strategies.tune import TuneStrategy

__all__ = [
    "AgentStrategy",
    "Context",
    "ManualStrategy",
    "Outcome",
    "Strategy",
    "TuneStrategy",
    "make_strategy",
]

_HOMES = {
    "AgentStrategy": "agent",
    "Context": "base",
    "ManualStrategy": "manual",
    "Outcome": "base",
    "Strategy": "base",
    "TuneStrategy": "tune",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


def make_strategy(settings: Settings) -> Strategy:
    if settings.miner_strategy == "tune":
        from quasar.miner.strategies.tune import TuneStrategy

        return TuneStrategy(settings.device)
    if settings.miner_strategy == "agent":
        from quasar.miner.llm import chat_model_from_settings
        from quasar.miner.strategies.agent import AgentStrategy

        return AgentStrategy(chat_model_from_settings(settings), settings.agent_iterations)
    from quasar.miner.strategies.manual import ManualStrategy

    return ManualStrategy()
