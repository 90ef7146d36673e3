"""Where a GPU worker's kernel allocates during timed calls: the parent's shared memory itself.

Runs in the sandboxed worker. A timed call's output must end up in memory the parent can read. If
the worker copied each returned ``o`` into a slot, that copy would be harness work inside the
measured interval that a patched worker could skip (having its kernel write straight into the slot)
and so be charged less than its kernel takes. Instead, every allocation the kernel makes during a
timed batch is served from the tail of the parent's exported allocation (the arena's *pool area*):
the kernel's own ``o`` already lies where the parent reads it, and there is no copy to skip. The
worker only reports where each output lies; the parent checks the report (``arena``).

Mechanism: a ``torch.cuda.MemPool`` whose allocator is a first-fit allocator over the pool area,
made of two ctypes callbacks handed to ``torch._C._cuda_customAllocator`` (the same hook
``CUDAPluggableAllocator`` uses for a compiled ``.so``). torch's caching allocator asks it for whole
segments only (2 MiB at least, 20 MiB for allocations of 1 to 10 MiB), so it is called a few times
per evaluation, not per call. When the pool area is full
it falls back to ``cuMemAlloc``: a kernel that needs more memory than the area still runs, and its
outputs outside the area are copied into their slots, which that kernel is charged for (the worker
says so in its reply). Imports torch and the standard library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator

import torch

#: Offsets handed out are multiples of this (what ``cudaMalloc`` guarantees, and more).
ALIGN = 512

_ALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int, ctypes.c_void_p)
_FREE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p)


class FirstFit:
    """First-fit allocation of aligned byte ranges of ``[0, size)``, with coalescing frees.

    Pure bookkeeping (no device calls), so it is tested on its own on the CPU."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free: list[tuple[int, int]] = [(0, size)]  # (offset, length), sorted, never adjacent
        self._used: dict[int, int] = {}

    def alloc(self, nbytes: int) -> int | None:
        length = -(-max(nbytes, 1) // ALIGN) * ALIGN
        for index, (offset, free) in enumerate(self._free):
            if free >= length:
                if free == length:
                    del self._free[index]
                else:
                    self._free[index] = (offset + length, free - length)
                self._used[offset] = length
                return offset
        return None

    def free(self, offset: int) -> bool:
        """Give back what ``alloc`` returned at ``offset``; False when it never did."""
        length = self._used.pop(offset, None)
        if length is None:
            return False
        spans = sorted([*self._free, (offset, length)])
        merged: list[tuple[int, int]] = []
        for start, span in spans:
            if merged and merged[-1][0] + merged[-1][1] == start:
                merged[-1] = (merged[-1][0], merged[-1][1] + span)
            else:
                merged.append((start, span))
        self._free = merged
        return True

    @property
    def used_bytes(self) -> int:
        return sum(self._used.values())


class OutputPool:
    """A torch memory pool over ``[base, base + size)`` of device memory this process has mapped."""

    def __init__(self, base: int, size: int, device: torch.device) -> None:
        self.base, self.size = base, size
        self.device_index = device.index if device.index is not None else torch.cuda.current_device()
        self.spans = spans = FirstFit(size)
        #: Segments the pool area could not hold, served by ``cuMemAlloc`` instead (pointer -> bytes).
        self.overflow: dict[int, int] = {}
        overflow, lock, driver = self.overflow, threading.Lock(), ctypes.CDLL("libcuda.so.1")

        # The callbacks use only what they close over: torch may call them while this object is
        # being torn down (the pool's last segments go back at interpreter exit). They are called
        # with the GIL re-taken by ctypes, and an exception in them would reach nobody, so every path
        # returns a pointer or 0 (torch then raises its out-of-memory error).
        def alloc(nbytes: int, _device: int, _stream: int) -> int:
            with lock:
                offset = spans.alloc(nbytes)
                if offset is not None:
                    return base + offset
                pointer = ctypes.c_ulonglong()
                if driver.cuMemAlloc_v2(ctypes.byref(pointer), ctypes.c_size_t(nbytes)) != 0:
                    return 0
                overflow[pointer.value] = nbytes
                return pointer.value

        def free(pointer: int | None, _nbytes: int, _device: int, _stream: int) -> None:
            with lock:
                if not pointer:
                    return
                if base <= pointer < base + size:
                    spans.free(pointer - base)
                elif overflow.pop(pointer, None) is not None:
                    driver.cuMemFree_v2(ctypes.c_ulonglong(pointer))

        # The callbacks must outlive the allocator that holds their addresses.
        self._callbacks = (_ALLOC(alloc), _FREE(free))
        allocator = torch._C._cuda_customAllocator(
            *(ctypes.cast(callback, ctypes.c_void_p).value for callback in self._callbacks)
        )
        self.pool = torch.cuda.MemPool(allocator)

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Route this thread's CUDA allocations to the pool for the duration."""
        with torch.cuda.use_mem_pool(self.pool, self.device_index):
            yield

    def offset_of(self, tensor: torch.Tensor) -> int | None:
        """Where ``tensor``'s elements start, relative to the pool area, when all of them lie inside
        it contiguously; None otherwise (then the caller copies it)."""
        if not tensor.is_contiguous():
            return None
        start = tensor.data_ptr() - self.base
        if start < 0 or start + tensor.numel() * tensor.element_size() > self.size:
            return None
        return start
