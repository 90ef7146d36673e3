"""How the miner improves its kernel: ``tune`` (knob search), ``agent`` (LLM patches), ``manual`` (your edits).

MINER_STRATEGY picks one; :func:`make_strategy` builds it from the settings.
"""

from __future__ import annotations

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


def make_strategy(settings: Settings) -> Strategy:
    if settings.miner_strategy == "tune":
        return TuneStrategy(settings.device)
    if settings.miner_strategy == "agent":
        from quasar.miner.llm import chat_model_from_settings

        return AgentStrategy(chat_model_from_settings(settings), settings.agent_iterations)
    return ManualStrategy()
