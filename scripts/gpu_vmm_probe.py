"""Probe: can the evaluation parent share GPU memory it owns with a worker inside the sandbox?

Run on an H200 on 2026-12-03: yes, at full bandwidth (docs/benchmarks.md). The driver calls it
probed with now live in ``quasar.evaluation.device_memory``, which this script uses (the evaluations
of ``scripts/gpu_evaluation.py`` ran on that module; this script was not run again since).

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
import json
import os
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
import torch
from quasar.evaluation.device_memory import SharedDeviceMemory
fd, nbytes = int(sys.argv[1]), int(sys.argv[2])
torch.cuda.init(); torch.zeros(1, device="cuda")
t0 = time.perf_counter()
x = SharedDeviceMemory.attach(fd, nbytes, torch.device("cuda")).tensor.view(torch.float32)
ok = bool(torch.equal(x[:1000].cpu(), torch.arange(1000, dtype=torch.float32)))
x.mul_(2.0)
torch.cuda.synchronize()
print(json.dumps({"child_read_parent_values": ok, "child_map_s": time.perf_counter() - t0}), flush=True)
"""


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
    from quasar.evaluation.device_memory import DeviceMemoryError, SharedDeviceMemory, granularity
    from quasar.evaluation.sandbox import Sandbox, SandboxLimits, detect

    torch.cuda.init()
    torch.zeros(1, device="cuda")
    device = torch.device("cuda", 0)
    gran = granularity(device)
    nbytes = -(-args.megabytes * 2**20 // gran) * gran
    try:
        memory = SharedDeviceMemory.create(nbytes, device)
    except DeviceMemoryError as exc:
        emit(step="export", ok=False, error=str(exc))
        return
    fd = memory.fd
    shared = memory.tensor.view(torch.float32)
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
    checkout = Path(__file__).resolve().parents[1]
    t0 = time.perf_counter()
    process = box.start(
        [sys.executable, "-I", "-c", CHILD, str(fd), str(nbytes), box.inside("checkout", checkout)],
        scratch=scratch, ro={"checkout": checkout}, pass_fds=(fd,),
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
