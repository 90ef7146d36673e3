"""Probe: can the evaluation parent share GPU memory it owns with a worker inside the sandbox?

Run on an H200 on 2026-12-03: yes, at full bandwidth (docs/benchmarks.md).

The trusted timing of CPU runs (``quasar/evaluation/timed_runs.py``) needs, on GPU, device buffers the
parent owns and the sandboxed worker maps. torch's CUDA IPC handles do not cross PID namespaces;
the CUDA driver's virtual-memory API can export an allocation as a POSIX file descriptor, which
passes like any other descriptor. This script checks that on this machine, inside the real sandbox:

1. the parent allocates with ``cuMemCreate`` (POSIX-fd handle type), exports it, fills it (torch);
2. a sandboxed child (``quasar.evaluation.sandbox``, GPU pinned) imports the descriptor, maps it,
   checks the parent's values, and writes its own;
3. the parent reads them back; it also times a copy kernel into the shared memory against ordinary
   torch memory, to see whether mapped memory costs bandwidth.

One JSON line per step to ``$OUT/vmm_probe.jsonl`` (or ``--out``). Usage:
``python scripts/gpu_vmm_probe.py``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import ctypes, json, sys, time
sys.path.insert(0, sys.argv[3])
from gpu_vmm_probe import Driver, as_tensor
import torch
fd, nbytes = int(sys.argv[1]), int(sys.argv[2])
torch.cuda.init(); torch.zeros(1, device="cuda")
drv = Driver()
t0 = time.perf_counter()
ptr = drv.import_and_map(fd, nbytes)
x = as_tensor(ptr, nbytes // 4)
ok = bool(torch.equal(x[:1000].cpu(), torch.arange(1000, dtype=torch.float32)))
x.mul_(2.0)
torch.cuda.synchronize()
print(json.dumps({"child_read_parent_values": ok, "child_map_s": time.perf_counter() - t0}), flush=True)
"""


class Driver:
    """The few CUDA driver calls the probe needs, through ctypes (the context is torch's)."""

    POSIX_FD, DEVICE, PINNED, READWRITE = 1, 1, 1, 3

    class Location(ctypes.Structure):
        _fields_ = [("type", ctypes.c_int), ("id", ctypes.c_int)]

    class AllocFlags(ctypes.Structure):
        _fields_ = [
            ("compressionType", ctypes.c_ubyte), ("gpuDirectRDMACapable", ctypes.c_ubyte),
            ("usage", ctypes.c_ushort), ("reserved", ctypes.c_ubyte * 4),
        ]  # fmt: skip

    class Prop(ctypes.Structure):
        pass

    class Access(ctypes.Structure):
        pass

    def __init__(self) -> None:
        self.cu = ctypes.CDLL("libcuda.so.1")
        Driver.Prop._fields_ = [
            ("type", ctypes.c_int), ("requestedHandleTypes", ctypes.c_int), ("location", Driver.Location),
            ("win32HandleMetaData", ctypes.c_void_p), ("allocFlags", Driver.AllocFlags),
        ]  # fmt: skip
        Driver.Access._fields_ = [("location", Driver.Location), ("flags", ctypes.c_int)]
        self.prop = Driver.Prop()
        self.prop.type, self.prop.requestedHandleTypes = self.PINNED, self.POSIX_FD
        self.prop.location = Driver.Location(self.DEVICE, 0)

    def check(self, result: int, what: str) -> None:
        if result != 0:
            raise RuntimeError(f"{what} failed with CUDA driver error {result}")

    def granularity(self) -> int:
        gran = ctypes.c_size_t()
        self.check(
            self.cu.cuMemGetAllocationGranularity(ctypes.byref(gran), ctypes.byref(self.prop), 0),
            "granularity",
        )
        return gran.value

    def _map(self, handle: ctypes.c_ulonglong, nbytes: int) -> int:
        ptr = ctypes.c_ulonglong()
        self.check(self.cu.cuMemAddressReserve(ctypes.byref(ptr), ctypes.c_size_t(nbytes), ctypes.c_size_t(0),
                                               ctypes.c_ulonglong(0), ctypes.c_ulonglong(0)), "cuMemAddressReserve")  # fmt: skip
        self.check(
            self.cu.cuMemMap(ptr, ctypes.c_size_t(nbytes), ctypes.c_size_t(0), handle, ctypes.c_ulonglong(0)),
            "cuMemMap",
        )
        access = Driver.Access(Driver.Location(self.DEVICE, 0), self.READWRITE)
        self.check(
            self.cu.cuMemSetAccess(ptr, ctypes.c_size_t(nbytes), ctypes.byref(access), ctypes.c_size_t(1)),
            "cuMemSetAccess",
        )
        return ptr.value

    def create_and_export(self, nbytes: int) -> tuple[int, int]:
        handle = ctypes.c_ulonglong()
        self.check(self.cu.cuMemCreate(ctypes.byref(handle), ctypes.c_size_t(nbytes), ctypes.byref(self.prop),
                                       ctypes.c_ulonglong(0)), "cuMemCreate")  # fmt: skip
        fd = ctypes.c_int()
        self.check(self.cu.cuMemExportToShareableHandle(ctypes.byref(fd), handle, self.POSIX_FD, ctypes.c_ulonglong(0)),
                   "cuMemExportToShareableHandle")  # fmt: skip
        return self._map(handle, nbytes), fd.value

    def import_and_map(self, fd: int, nbytes: int) -> int:
        handle = ctypes.c_ulonglong()
        self.check(self.cu.cuMemImportFromShareableHandle(ctypes.byref(handle), ctypes.c_void_p(fd), self.POSIX_FD),
                   "cuMemImportFromShareableHandle")  # fmt: skip
        return self._map(handle, nbytes)


def as_tensor(ptr: int, count: int):  # noqa: ANN201 - torch is imported late on purpose
    import torch

    class Interface:
        __cuda_array_interface__ = {"shape": (count,), "typestr": "<f4", "data": (ptr, False), "version": 3}

    return torch.as_tensor(Interface(), device="cuda")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "vmm_probe.jsonl"))
    parser.add_argument("--megabytes", type=int, default=256)
    args = parser.parse_args()
    out = open(args.out, "w")  # noqa: SIM115 - one file for the whole run

    def emit(**row: object) -> None:
        out.write(json.dumps(row) + "\n")
        out.flush()
        print(json.dumps(row), flush=True)

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from quasar.evaluation.sandbox import Sandbox, SandboxLimits, detect

    torch.cuda.init()
    torch.zeros(1, device="cuda")
    drv = Driver()
    gran = drv.granularity()
    nbytes = -(-args.megabytes * 2**20 // gran) * gran
    try:
        ptr, fd = drv.create_and_export(nbytes)
    except RuntimeError as exc:
        emit(step="export", ok=False, error=str(exc))
        return
    shared = as_tensor(ptr, nbytes // 4)
    shared[:1000] = torch.arange(1000, dtype=torch.float32, device="cuda")
    torch.cuda.synchronize()
    emit(step="export", ok=True, granularity=gran, nbytes=nbytes, fd=fd)

    ordinary = torch.empty(nbytes // 4, device="cuda")
    source = torch.randn(nbytes // 4, device="cuda")
    for name, target in (("shared", shared), ("ordinary", ordinary)):
        for _ in range(3):
            target.copy_(source)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(20):
            target.copy_(source)
        end.record()
        torch.cuda.synchronize()
        ms = start.elapsed_time(end) / 20
        emit(step="bandwidth", memory=name, ms=ms, gb_per_s=2 * nbytes / ms / 1e6)
    shared[:1000] = torch.arange(1000, dtype=torch.float32, device="cuda")
    torch.cuda.synchronize()

    mechanisms = detect()
    emit(step="sandbox", mechanisms=mechanisms.describe())
    box = Sandbox(SandboxLimits(wall_s=120, memory_bytes=16 * 2**30, max_pids=256), gpu_index=0)
    scratch = Path(tempfile.mkdtemp())
    scratch.chmod(0o777)
    here = Path(__file__).resolve().parent
    t0 = time.perf_counter()
    process = box.start(
        [sys.executable, "-I", "-c", CHILD, str(fd), str(nbytes), box.inside("probe", here)],
        scratch=scratch, ro={"probe": here}, pass_fds=(fd,),
    )  # fmt: skip
    result = process.finish()
    emit(
        step="child", returncode=result.returncode, seconds=time.perf_counter() - t0,
        output=result.output.decode(errors="replace")[-3000:],
    )  # fmt: skip
    torch.cuda.synchronize()
    doubled = bool(torch.equal(shared[:1000].cpu(), 2 * torch.arange(1000, dtype=torch.float32)))
    emit(step="parent_reads_child_values", ok=doubled)


if __name__ == "__main__":
    main()
