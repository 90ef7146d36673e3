"""How the bench times a callable: CUDA events on GPU, ``time.perf_counter`` on CPU.

On GPU: warm-up calls, then at least 20 timed runs that rotate through at least 3 input sets whose
total size exceeds the L2 cache (so no run finds its inputs already cached), each run bracketed by CUDA
events and followed by a device-wide synchronize. The host wall-clock of every run is recorded too: a
kernel that hides work on a side stream escapes the events but not the synchronize. Peak memory is
what one call allocates beyond what was live before it. The timed region is the whole call.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .schema import Timing

#: Used when the device does not report its L2 size.
DEFAULT_L2_BYTES = 50 * 1024 * 1024
MIN_INPUT_SETS = 3
MAX_INPUT_SETS = 64
MIN_GPU_RUNS = 20


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def l2_cache_bytes(device: torch.device) -> int:
    """The device's L2 size in bytes (CUDA), else DEFAULT_L2_BYTES."""
    if device.type == "cuda":
        size = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0)
        if size:
            return int(size)
    return DEFAULT_L2_BYTES


def input_sets_needed(bytes_per_set: int, device: torch.device) -> int:
    """How many rotating input sets make the rotation larger than L2 (at least 3)."""
    needed = math.ceil(l2_cache_bytes(device) / max(bytes_per_set, 1)) + 1
    return min(max(MIN_INPUT_SETS, needed), MAX_INPUT_SETS)


def tensor_bytes(args: Sequence[Any]) -> int:
    return sum(a.numel() * a.element_size() for a in args if isinstance(a, torch.Tensor))


def _percentile(sorted_values: Sequence[float], fraction: float) -> float:
    position = fraction * (len(sorted_values) - 1)
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def time_callable(
    fn: Callable[..., Any],
    arg_sets: Sequence[Sequence[Any]],
    *,
    device: torch.device,
    runs: int,
    warmup: int,
    shape: dict[str, Any],
    dtype: str,
    tokens: int | None = None,
) -> Timing:
    """Time ``fn(*arg_sets[i % len(arg_sets)])`` and summarise it as a ``Timing``.

    On CUDA ``runs`` is raised to at least 20. Exceptions from ``fn`` propagate to the caller.
    """
    if not arg_sets:
        raise ValueError("time_callable needs at least one input set")
    cuda = device.type == "cuda"
    if cuda:
        runs = max(runs, MIN_GPU_RUNS)
    sync = torch.cuda.synchronize if cuda else (lambda *_: None)

    peak_mem_mb = None
    with torch.no_grad():
        for i in range(max(warmup, 1)):
            if cuda and i == 0:
                sync()
                before = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
            result = fn(*arg_sets[i % len(arg_sets)])
            sync()
            if cuda and i == 0:
                peak_mem_mb = (torch.cuda.max_memory_allocated(device) - before) / 2**20
            del result

        event_ms: list[float] = []
        wall_ms: list[float] = []
        for i in range(runs):
            args = arg_sets[i % len(arg_sets)]
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                t0 = time.perf_counter()
                start.record()
                result = fn(*args)
                end.record()
                sync()
                wall_ms.append((time.perf_counter() - t0) * 1e3)
                event_ms.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                result = fn(*args)
                wall_ms.append((time.perf_counter() - t0) * 1e3)
            del result

    samples = sorted(event_ms if cuda else wall_ms)
    median = statistics.median(samples)
    return Timing(
        shape=shape,
        dtype=dtype,
        device=device_name(device),
        median_ms=median,
        p10_ms=_percentile(samples, 0.1),
        p90_ms=_percentile(samples, 0.9),
        runs=runs,
        input_sets=len(arg_sets),
        warmup=max(warmup, 1),
        peak_mem_mb=peak_mem_mb,
        wall_median_ms=statistics.median(wall_ms),
        method="cuda_events" if cuda else "perf_counter",
        tokens_per_s=(tokens / (median / 1e3)) if tokens and median > 0 else None,
    )
