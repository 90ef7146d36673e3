#!/usr/bin/env python3
"""Acceptance of the trusted GPU timing: full evaluations of honest and dishonest submissions.

Run on a CUDA machine from a checkout, with quasar importable by the sandboxed worker (installed, or
a ``.pth`` file in site-packages naming the checkout). In one run it:

1. measures how long a trivial kernel of the parent takes when the GPU is idle and while another
   process keeps it busy (whether a frozen worker's leftover GPU work could be seen that way);
2. times the template kernel and the template plus a fixed GPU spin with CUDA events in this
   process (the honest costs the evaluations should reproduce);
3. runs ``evaluate()`` in full mode on repos made by ``quasar kernel init``: the untouched template
   (``--template-runs`` times), the template plus the spin, a submission that hooks the harness's
   input step, one that answers before its GPU work is done, one that hides work on a side stream,
   and an approximate kernel (the state restarts every 8,192 tokens).

Step 1 (``--only settle``) showed on an H200 that such a kernel is no sign of an idle device (0.13 ms
idle, 0.23-0.31 ms beside another process's 10 ms kernels), so the timing does not rely on it.

One JSON line per measurement to ``$OUT/gpu_evaluation.jsonl`` (or ``--out``). Usage:
``python scripts/gpu_evaluation.py [--only template,spin] [--template-runs 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import torch  # noqa: E402

from quasar.bench.cases import make_inputs  # noqa: E402
from quasar.bench.suite import timing_spec  # noqa: E402
from quasar.evaluation.evaluate import EvaluationOptions, evaluate  # noqa: E402
from quasar.evaluation.sandbox import SandboxLimits  # noqa: E402
from quasar.kernels.template import init_kernel_repo  # noqa: E402

#: GPU cycles of the fixed spin (~0.3 ms at the H200's ~1.98 GHz).
SPIN_CYCLES = 600_000

#: Each submission is the template's own entry module with these lines appended (``_template`` is its
#: ``chunk_quasar``).
TEMPLATE_IMPORT = "\n_template = chunk_quasar\n"

SUBMISSIONS = {
    "spin": TEMPLATE_IMPORT
    + f"""
import torch

def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    out = _template(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
    torch.cuda._sleep({SPIN_CYCLES})
    return out
""",
    # Computes the answer when the harness hands it a slot's inputs, so the call only returns it.
    "hook": TEMPLATE_IMPORT
    + """
from quasar.evaluation import arena

_real_inputs = arena.Arena.inputs
_answers = {}

def _inputs_and_answer(self, slot):
    q, k, v, beta = _real_inputs(self, slot)
    _answers[q.data_ptr()] = _template(q, k, v, beta)
    return q, k, v, beta

arena.Arena.inputs = _inputs_and_answer

def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    if q.data_ptr() in _answers:
        return _answers.pop(q.data_ptr())
    return _template(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
""",
    # The worker's synchronisation is a no-op: each batch answers while its kernels still run.
    "answers_early": TEMPLATE_IMPORT
    + """
from quasar.evaluation import worker

worker.Worker._sync = lambda self: None
chunk_quasar = _template
""",
    "side_stream": TEMPLATE_IMPORT
    + """
import torch

_stream = None

def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    global _stream
    _stream = _stream or torch.cuda.Stream()
    _stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(_stream):
        return _template(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
""",
    # Approximate: every 8,192 tokens the state starts again from zero.
    "approximate": TEMPLATE_IMPORT
    + """
import torch

def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    if cu_seqlens is not None or initial_state is not None or output_final_state or q.shape[0] != 1:
        return _template(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
    t = q.shape[1]
    cuts = torch.arange(0, t, 8192, device=q.device, dtype=torch.int32)
    cuts = torch.cat([cuts, torch.tensor([t], device=q.device, dtype=torch.int32)])
    return _template(q, k, v, beta, None, False, cuts)
""",
}


def emit(out, **row: object) -> None:
    out.write(json.dumps(row, default=str) + "\n")
    out.flush()
    print(json.dumps(row, default=str)[:2000], flush=True)


BUSY_CHILD = r"""
import sys, time, torch
torch.zeros(1, device="cuda")
end = time.time() + float(sys.argv[1])
print("busy", flush=True)
while time.time() < end:
    torch.cuda._sleep(int(sys.argv[2]))
    torch.cuda.synchronize()
"""


def settle_latency(out) -> None:
    """The parent's trivial kernel, launch to finish, idle and beside a busy process."""
    probe = torch.zeros(1, device="cuda")

    def sample(n: int) -> list[float]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            probe.add_(1.0)
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
            time.sleep(0.002)
        return sorted(times)

    idle = sample(200)
    emit(out, step="settle_idle", median_ms=statistics.median(idle), p99_ms=idle[int(0.99 * len(idle))],
         max_ms=idle[-1])  # fmt: skip
    for cycles in (200_000, 2_000_000, 20_000_000):  # ~0.1 ms, ~1 ms, ~10 ms kernels in the other process
        child = subprocess.Popen([sys.executable, "-c", BUSY_CHILD, "3", str(cycles)], stdout=subprocess.PIPE,
                                 text=True)  # fmt: skip
        assert child.stdout is not None
        child.stdout.readline()
        time.sleep(0.3)
        busy = sample(200)
        child.wait()
        emit(out, step="settle_busy", other_kernel_cycles=cycles, median_ms=statistics.median(busy),
             p10_ms=busy[len(busy) // 10], max_ms=busy[-1])  # fmt: skip


def event_costs(out) -> None:
    """Template and template+spin per call, CUDA events, fresh inputs in rotation (this process)."""
    from quasar.kernels import chunk_quasar

    spec = timing_spec("cuda", False)
    sets = [make_inputs(spec, seed, "cuda") for seed in range(4)]

    def spin_call(*args):
        o = chunk_quasar(*args)
        torch.cuda._sleep(SPIN_CYCLES)
        return o

    for name, fn in (("template", chunk_quasar), ("spin", spin_call), ("template_again", chunk_quasar)):
        for i in range(5):
            fn(*sets[i % 4].args())
        single, batched = [], []
        for i in range(40):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(*sets[i % 4].args())
            end.record()
            torch.cuda.synchronize()
            single.append(start.elapsed_time(end))
        for _ in range(10):
            # Back to back, as the evaluation's batches run them: 16 calls between two events.
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for i in range(16):
                fn(*sets[i % 4].args())
            end.record()
            torch.cuda.synchronize()
            batched.append(start.elapsed_time(end) / 16)
        emit(out, step="event_cost", kernel=name, median_ms=statistics.median(single), min_ms=min(single),
             back_to_back_median_ms=statistics.median(batched))  # fmt: skip


def run_evaluation(out, name: str, source: str | None, work: Path, index: int, cache: Path) -> None:
    repo = work / f"repo-{name}-{index}"
    init_kernel_repo(repo)
    if source is not None:
        entry = repo / "fla/ops/quasar/__init__.py"
        entry.write_text(entry.read_text() + textwrap.dedent(source))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@quasar.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", name], cwd=repo, check=True)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    limits = SandboxLimits(
        wall_s=400, memory_bytes=48 * 2**30, max_pids=512, scratch_bytes=8 * 2**30, file_bytes=2**30,
        tmp_bytes=2 * 2**30,
    )  # fmt: skip
    options = EvaluationOptions(
        device="cuda", gpu_index=0, dev_mode=True, quick=False, limits=limits, work_dir=str(work),
        kernel_cache_dir=str(cache),
    )  # fmt: skip
    report = evaluate(str(repo), sha, options)
    timing = report.timing
    comparison = report.wall.get("comparison", {})
    emit(
        out, step="evaluation", submission=name, run=index, verdict=report.verdict, reason=report.reason,
        detail=(report.detail or "")[:600], duration_s=report.duration_s, kernel_seconds=report.kernel_seconds,
        median_ms=getattr(timing, "median_ms", None), baseline_ms=getattr(timing, "baseline_ms", None),
        speedup=getattr(timing, "speedup", None), ci_low=getattr(timing, "speedup_ci_low", None),
        ci_high=getattr(timing, "speedup_ci_high", None), inconclusive=getattr(timing, "inconclusive", None),
        pairs=comparison.get("pairs"), empty_batch_ms=comparison.get("empty_batch_ms"),
        output_copy_ms=comparison.get("output_copy_ms"), outputs_copied=comparison.get("outputs_copied"),
        solo_ms=comparison.get("solo_ms"), solo_after_ms=comparison.get("solo_after_ms"), inside_ms=comparison.get("inside_ms"),
        submission_ms=comparison.get("submission_ms"), baseline_batches_ms=comparison.get("baseline_ms"),
        timed_checks=len(report.timed_checks), max_rel_error=report.max_rel_error, sandbox=report.sandbox,
        phases=report.wall.get("phases"), log_tail=report.log_tail[-1500:] if report.verdict != "pass" else "",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu_evaluation.jsonl"))
    parser.add_argument("--only", default="events,template," + ",".join(SUBMISSIONS), help="also: settle")
    parser.add_argument("--template-runs", type=int, default=3)
    parser.add_argument(
        "--kernel-cache", default=None, help="the validator's kernel cache (default: a new one)"
    )
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    out = open(args.out, "a")  # noqa: SIM115 - one file for the whole run
    emit(out, step="device", name=torch.cuda.get_device_name(), torch=torch.__version__,
         date=time.strftime("%Y-%m-%d %H:%M:%S"))  # fmt: skip
    if "settle" in wanted:
        settle_latency(out)
    if "events" in wanted:
        event_costs(out)
    work = Path(tempfile.mkdtemp(prefix="gpu-eval-"))
    work.chmod(0o755)
    # One kernel cache for the whole run, as a validator keeps one: the first evaluation fills it.
    cache = Path(args.kernel_cache) if args.kernel_cache else work / "kernel-cache"
    if "template" in wanted:
        for i in range(args.template_runs):
            run_evaluation(out, "template", None, work, i, cache)
    for name, source in SUBMISSIONS.items():
        if name in wanted:
            run_evaluation(out, name, source, work, 0, cache)


if __name__ == "__main__":
    main()
