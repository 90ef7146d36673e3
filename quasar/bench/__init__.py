"""The QuasarAttention bench: correctness cases, trusted checks, timing, and the report schema.

Imports torch, triton and rich only (the GPU machine has nothing else). ``python -m quasar.bench`` and
``quasar bench`` run ``run_bench``; the evaluation code reads its ``BenchReport``.
"""

from .schema import SCHEMA_VERSION, BenchReport, CaseResult, Timing
from .suite import DEFAULT_ENTRY, EntryPointError, load_entry_point, run_bench

__all__ = [
    "DEFAULT_ENTRY",
    "SCHEMA_VERSION",
    "BenchReport",
    "CaseResult",
    "EntryPointError",
    "Timing",
    "load_entry_point",
    "run_bench",
]
