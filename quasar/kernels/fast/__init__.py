"""The fast baseline QuasarAttention op in Triton: ``chunk_quasar`` (DESIGN §2 signature).

Self-contained: it imports torch, triton and its sibling modules only, because ``quasar kernel init``
copies it verbatim into a miner's repository, whose own ``fla`` package shadows any installed one.
"""

from .chunk import chunk_quasar, quasar_fwd

__all__ = ["chunk_quasar", "quasar_fwd"]
