"""Input and output buffers of timed runs, owned by the evaluation parent and shared with a worker.

The parent creates the memory (``Arena.create``): a sealed memfd on CPU, a CUDA virtual-memory
allocation exported as a file descriptor on GPU (``device_memory``). It writes every run's fresh
inputs into it inside the interval it times, and reads the outputs back once the worker is frozen
again; the worker maps the same memory from the inherited descriptor (``Arena.attach``) and calls
the kernel on the inputs of each slot. So a run's inputs exist only inside the interval the parent
times, and its outputs are judged exactly as they were when that interval closed: nothing of the
harness runs outside it for the submission to move work into.

Where outputs land: on GPU the memory has a *pool area* after the slots, from which the worker's
kernel allocates during timed calls (``output_pool``), so its ``o`` is already where the parent
reads it and there is no harness copy for a patched worker to skip; on CPU (and on GPU for an
output that did not fit the pool area) the worker copies ``o`` into the slot's own ``o`` field. The
worker reports each output's offset; ``Arena.output_at`` accepts only an offset that is a slot's
``o`` field or lies inside the pool area, and ``distinct_outputs`` refuses two calls answering with
the same memory.

The layout (``slot_layout``) follows from the case spec alone, so both sides compute it the same way.
The memfd's seals (no shrinking, no growing, no new seals) keep a worker from truncating the memory
under the parent. The worker imports this module in the sandbox: standard library, torch and
``quasar.bench``.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import mmap
import os
from dataclasses import dataclass

import torch

from quasar.bench.cases import CaseSpec

from .device_memory import SharedDeviceMemory, granularity

_ALIGN = 64


@dataclass(frozen=True)
class Field:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    offset: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * torch.empty((), dtype=self.dtype).element_size()


def slot_layout(spec: CaseSpec) -> tuple[list[Field], int]:
    """The fields of one slot for timed runs of ``spec`` (inputs q, k, v, beta; output o) and the
    slot's size in bytes. Timed runs have no initial state and no packing (the benchmark shape), so a
    slot holds nothing else."""
    b, t, h = spec.batch, spec.seq_len, spec.heads
    shapes = [
        ("q", (b, t, h, spec.key_dim), spec.dtype),
        ("k", (b, t, h, spec.key_dim), spec.dtype),
        ("v", (b, t, h, spec.value_dim), spec.dtype),
        ("beta", (h,), torch.float32),
        ("o", (b, t, h, spec.value_dim), spec.dtype),
    ]
    fields, offset = [], 0
    for name, shape, dt in shapes:
        f = Field(name, shape, dt, offset)
        fields.append(f)
        offset += -(-f.nbytes // _ALIGN) * _ALIGN
    return fields, offset


#: The least pool area: torch's allocator asks for segments of 2 and 20 MiB for small allocations.
MIN_POOL_BYTES = 256 * 2**20


def pool_bytes(layout: tuple[list[Field], int], slots: int) -> int:
    """The GPU pool area's size: every slot's output, plus room for a call's temporaries four times
    the size of its own inputs and output (the baseline needs about one; what does not fit still runs,
    and is copied), and never less than ``MIN_POOL_BYTES`` of room."""
    fields, slot_bytes = layout
    o_bytes = next(f.nbytes for f in fields if f.name == "o")
    return slots * -(-o_bytes // _ALIGN) * _ALIGN + max(4 * slot_bytes, MIN_POOL_BYTES)


class OutputRejected(ValueError):
    """A worker reported an output the parent will not read (outside the allowed places, misaligned,
    or the same memory as another call's); the message says which."""


class Arena:
    """``slots`` sets of timed-run buffers in one shared memory mapping (host or device), followed
    by ``pool_bytes`` of pool area (GPU only)."""

    def __init__(
        self, fd: int, raw: torch.Tensor, fields: list[Field], slot_bytes: int, slots: int,
        memory: mmap.mmap | None = None, device_memory: SharedDeviceMemory | None = None,
        pool_bytes: int = 0,
    ) -> None:  # fmt: skip
        self.fd, self.slots = fd, slots
        self._memory, self._device_memory = memory, device_memory
        self._raw = raw
        self.device = raw.device
        self._o = next(f for f in fields if f.name == "o")
        self._slot_bytes = slot_bytes
        #: Where the pool area starts and how long it is, in bytes from the start of the memory.
        self.pool_offset, self.pool_bytes = slots * slot_bytes, pool_bytes
        self.views: list[dict[str, torch.Tensor]] = []
        for slot in range(slots):
            base = slot * slot_bytes
            self.views.append({
                f.name: raw[base + f.offset : base + f.offset + f.nbytes].view(f.dtype).view(f.shape)
                for f in fields
            })  # fmt: skip

    @classmethod
    def create(
        cls, layout: tuple[list[Field], int], slots: int, device: torch.device | None = None,
        pool_bytes: int = 0,
    ) -> Arena:  # fmt: skip
        """New shared memory of ``slots`` slots (and, on CUDA, ``pool_bytes`` of pool area) on
        ``device`` (CPU: a sealed memfd, every page touched so it is charged to the parent; CUDA:
        exported driver memory)."""
        fields, slot_bytes = layout
        total = slot_bytes * slots
        if device is not None and device.type == "cuda":
            shared = SharedDeviceMemory.create(total + pool_bytes, device)
            shared.tensor.zero_()
            return cls(
                shared.fd,
                shared.tensor,
                fields,
                slot_bytes,
                slots,
                device_memory=shared,
                pool_bytes=pool_bytes,
            )
        fd = os.memfd_create("quasar-timed-runs", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, total)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
            memory = mmap.mmap(fd, total)
        except BaseException:
            os.close(fd)
            raise
        memory.write(b"\0" * total)
        return cls(fd, _host_bytes(memory, total), fields, slot_bytes, slots, memory=memory)

    @classmethod
    def attach(
        cls, fd: int, layout: tuple[list[Field], int], slots: int, device: torch.device | None = None,
        pool_bytes: int = 0,
    ) -> Arena:  # fmt: skip
        """The worker's side: map the inherited descriptor ``fd`` with the same layout."""
        fields, slot_bytes = layout
        total = slot_bytes * slots
        if device is not None and device.type == "cuda":
            gran = granularity(device)
            shared = SharedDeviceMemory.attach(fd, -(-(total + pool_bytes) // gran) * gran, device)
            return cls(
                fd, shared.tensor, fields, slot_bytes, slots, device_memory=shared, pool_bytes=pool_bytes
            )
        if os.fstat(fd).st_size != total:
            raise ValueError(f"the shared buffers hold {os.fstat(fd).st_size} bytes, expected {total}")
        memory = mmap.mmap(fd, total)
        return cls(fd, _host_bytes(memory, total), fields, slot_bytes, slots, memory=memory)

    def inputs(self, slot: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        view = self.views[slot]
        return view["q"], view["k"], view["v"], view["beta"]

    def output(self, slot: int) -> torch.Tensor:
        """Slot ``slot``'s own ``o`` field (where a copied output goes)."""
        return self.views[slot]["o"]

    def output_offset(self, slot: int) -> int:
        return slot * self._slot_bytes + self._o.offset

    @property
    def pool_address(self) -> int:
        """The pool area's device address in this process (the worker's ``OutputPool`` base)."""
        return self._raw.data_ptr() + self.pool_offset

    def output_at(self, offset: int) -> torch.Tensor:
        """The output a worker reported at byte ``offset``: a slot's ``o`` field, or an output-sized
        span inside the pool area aligned to its element size. Anything else is refused."""
        o = self._o
        if type(offset) is not int:
            raise OutputRejected(f"an output offset must be an integer, got {type(offset).__name__}")
        in_pool = self.pool_offset <= offset and offset + o.nbytes <= self.pool_offset + self.pool_bytes
        a_slot = any(offset == self.output_offset(slot) for slot in range(self.slots))
        element = torch.empty((), dtype=o.dtype).element_size()
        if not (in_pool or a_slot) or offset % element:
            raise OutputRejected(
                f"an output reported at byte {offset} is neither a slot's output nor inside the pool area"
            )
        return self._raw[offset : offset + o.nbytes].view(o.dtype).view(o.shape)

    def distinct_outputs(self, offsets: list[int]) -> None:
        """Refuse a batch whose outputs share memory: each call must answer in its own."""
        spans = sorted(offsets)
        for before, after in zip(spans, spans[1:], strict=False):
            if after < before + self._o.nbytes:
                raise OutputRejected(f"two calls returned overlapping outputs (bytes {before} and {after})")

    def close(self) -> None:
        self.views.clear()
        del self._raw
        if self._device_memory is not None:
            self._device_memory.close()
            return
        assert self._memory is not None
        # A tensor somewhere may still view the mapping; then it goes when the last view does.
        with contextlib.suppress(BufferError):
            self._memory.close()
        os.close(self.fd)


def _host_bytes(memory: mmap.mmap, total: int) -> torch.Tensor:
    return torch.frombuffer(memory, dtype=torch.uint8, count=total)
