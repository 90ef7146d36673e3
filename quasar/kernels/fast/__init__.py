"""The fast baseline QuasarAttention op in Triton: ``chunk_quasar`` (DESIGN §2 signature).

Self-contained: it imports torch, triton and its sibling modules only, because ``quasar kernel init``
copies it verbatim into a miner's repository, whose own ``fla`` package shadows any installed one.
Its launch settings (segment length, warps, stages) are knobs declared in ``tuning.py`` and tuned per
GPU in ``tuned.json``; ``quasar_fwd(..., settings=)`` and ``launch_settings`` are what a tuner uses.
"""

from .chunk import chunk_quasar, launch_settings, quasar_fwd

__all__ = ["chunk_quasar", "launch_settings", "quasar_fwd"]
