"""Input and output buffers of timed runs, owned by the evaluation parent and shared with a worker.

The parent creates the memory (``Arena.create``): a sealed memfd on CPU, a CUDA virtual-memory
allocation exported as a file descriptor on GPU (``device_memory``). It writes every run's fresh
inputs into it inside the interval it times, and reads the outputs back once the worker is frozen
again; the worker maps the same memory from the inherited descriptor (``Arena.attach``), calls the
kernel on the inputs of each slot and copies what it returned into the slot's outputs. So a run's
inputs exist only inside the interval the parent times, and its outputs are judged exactly as they
were when that interval closed: nothing of the harness runs outside it for the submission to move
work into.

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


class Arena:
    """``slots`` sets of timed-run buffers in one shared memory mapping (host or device)."""

    def __init__(
        self, fd: int, raw: torch.Tensor, fields: list[Field], slot_bytes: int, slots: int,
        memory: mmap.mmap | None = None, device_memory: SharedDeviceMemory | None = None,
    ) -> None:  # fmt: skip
        self.fd, self.slots = fd, slots
        self._memory, self._device_memory = memory, device_memory
        self.device = raw.device
        self.views: list[dict[str, torch.Tensor]] = []
        for slot in range(slots):
            base = slot * slot_bytes
            self.views.append({
                f.name: raw[base + f.offset : base + f.offset + f.nbytes].view(f.dtype).view(f.shape)
                for f in fields
            })  # fmt: skip

    @classmethod
    def create(cls, layout: tuple[list[Field], int], slots: int, device: torch.device | None = None) -> Arena:
        """New shared memory of ``slots`` slots on ``device`` (CPU: a sealed memfd, every page
        touched so it is charged to the parent; CUDA: exported driver memory)."""
        fields, slot_bytes = layout
        total = slot_bytes * slots
        if device is not None and device.type == "cuda":
            shared = SharedDeviceMemory.create(total, device)
            shared.tensor.zero_()
            return cls(shared.fd, shared.tensor, fields, slot_bytes, slots, device_memory=shared)
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
        cls, fd: int, layout: tuple[list[Field], int], slots: int, device: torch.device | None = None
    ) -> Arena:
        """The worker's side: map the inherited descriptor ``fd`` with the same layout."""
        fields, slot_bytes = layout
        total = slot_bytes * slots
        if device is not None and device.type == "cuda":
            shared = SharedDeviceMemory.attach(
                fd, -(-total // granularity(device)) * granularity(device), device
            )
            return cls(fd, shared.tensor, fields, slot_bytes, slots, device_memory=shared)
        if os.fstat(fd).st_size != total:
            raise ValueError(f"the shared buffers hold {os.fstat(fd).st_size} bytes, expected {total}")
        memory = mmap.mmap(fd, total)
        return cls(fd, _host_bytes(memory, total), fields, slot_bytes, slots, memory=memory)

    def inputs(self, slot: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        view = self.views[slot]
        return view["q"], view["k"], view["v"], view["beta"]

    def output(self, slot: int) -> torch.Tensor:
        return self.views[slot]["o"]

    def close(self) -> None:
        self.views.clear()
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
