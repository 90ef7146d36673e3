"""The sandboxed side of an evaluation: imports the submission and runs it as the parent directs.

``python -I -m quasar.evaluation.worker REPLY_FD`` runs inside the sandbox. It imports torch, the
standard library, ``quasar.bench`` and ``quasar.kernels`` only, and the submission's entry point when
told to. Everything it learns comes from the parent, one JSON command per line on stdin, only when
it is needed; every reply is one JSON line on ``REPLY_FD`` (stdout is the submission's log stream).

Commands, in the order the parent sends them:

``start``   device, entry, repo, quick. Loads torch; replies with versions and the device name.
``time``    target (``baseline`` before the import, ``entry`` after), shape, sets, warmup. Allocates
            the rotating input buffers. Then for each run the parent sends ``next`` (the run's own
            seed, which the submission cannot know earlier, and whether to save the previous run's
            outputs) and ``run``; the reply to ``run`` carries the in-sandbox time. The parent times
            each ``run`` round trip on its own clock, so a patched timer is caught, and decides
            which runs' outputs to save only after they ran, so every run must be correct.
``import``  imports the entry point from the repository.
``cases``   seed. Runs every correctness case and saves each ``(o, final_state)`` to the scratch
            dir with ``torch.save``; the trusted checker recomputes them elsewhere.
``arena``   fd, slots, target (``baseline`` or ``entry``). Maps the parent's shared buffers of timed
            runs (``arena``) from the inherited descriptor ``fd``.
``batch``   slots. Calls the target on the inputs of each slot, back to back, and copies each output
            into the slot. The parent writes the inputs while this process is frozen, thaws it, sends
            ``batch``, freezes it again on the reply and only then reads the outputs: the whole span is
            on the parent's clock, and nothing here runs outside it (CPU; see ``timed_runs``).
``exit``

Outputs are saved only when they are plain ``torch.Tensor`` objects (a subclass could compute lazily
or lie about its values); after saving, the tensors the kernel returned are overwritten with NaN, so
a kernel that hands back a cached buffer serves NaN next time. Nothing the worker says about
correctness is trusted: the checker reads the saved tensors with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from quasar.evaluation.protocol import CommandServer

# Bound before any submission code runs; a submission that patches ``time`` changes what the
# module attribute points at, not these names (and the parent's own clock is the real check).
_perf_counter = time.perf_counter
_OUTPUT_LIMIT = 2000


def _short(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(exc)).strip()
    return text[-_OUTPUT_LIMIT:]


class Worker(CommandServer):
    def __init__(self, reply_fd: int) -> None:
        super().__init__(reply_fd)
        self.scratch = Path(os.environ.get("QUASAR_SCRATCH", "."))
        self.entry: Any = None
        self.torch: Any = None
        self.device: Any = None
        self.quick = False
        self._timing: dict[str, Any] | None = None
        self._mem_before = 0

    # --- commands --------------------------------------------------------------------------------
    def start(self, device: str, entry: str, repo: str, quick: bool = False) -> None:
        import torch

        from quasar.bench.timing import device_name

        self.torch = torch
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.init()
        self.entry_spec, self.repo, self.quick = entry, repo, quick
        self.reply(ok=True, torch=torch.__version__, device_name=device_name(self.device))

    def do_import(self) -> None:
        from quasar.bench.suite import EntryPointError, load_entry_point

        try:
            self.entry = load_entry_point(self.entry_spec, self.repo)
        except EntryPointError as exc:
            self.reply(ok=False, error=str(exc)[-_OUTPUT_LIMIT:])
            return
        self.reply(ok=True)

    def _plain(self, value: Any) -> bool:
        return value is None or type(value) is self.torch.Tensor

    def _save(self, result: Any, path: Path, want_final: bool) -> str | None:
        """Save ``(o, final)`` for the checker; the reason it cannot, or None."""
        torch = self.torch
        if not isinstance(result, tuple | list) or len(result) != 2:
            return "bad_return_value: the kernel must return a tuple (o, final_state)"
        o, final = result
        if not self._plain(o) or (want_final and not self._plain(final)):
            kind = type(o).__name__ if not self._plain(o) else type(final).__name__
            return f"tensor_subclass: returned a {kind}; return plain torch.Tensor objects"
        if o is None:
            return "bad_return_value: o is None"
        saved = {"o": o.detach().to("cpu", copy=True)}
        if want_final and final is not None:
            saved["final"] = final.detach().to("cpu", copy=True)
        torch.save(saved, path)
        return None

    def _poison(self, result: Any) -> None:
        from quasar.bench.check import poison_returned

        if isinstance(result, tuple | list):
            # A read-only or odd tensor cannot be poisoned; the checker still judges its values.
            with contextlib.suppress(Exception):
                poison_returned(*(t for t in result if type(t) is self.torch.Tensor))

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def cases(self, seed: int) -> None:
        from quasar.bench.cases import case_seed, correctness_cases, make_inputs

        torch = self.torch
        report = []
        for index, spec in enumerate(correctness_cases(self.device.type, self.quick)):
            inputs = make_inputs(spec, case_seed(seed, index), self.device)
            t0 = _perf_counter()
            error = None
            result: Any = None
            try:
                with torch.no_grad():
                    result = self.entry(*inputs.args())
                self._sync()
            except Exception as exc:
                error = f"kernel_exception: {_short(exc)}"
            seconds = _perf_counter() - t0
            if error is None:
                try:
                    error = self._save(result, self.scratch / f"case_{index}.pt", spec.output_final_state)
                except Exception as exc:
                    error = f"bad_return_value: {_short(exc)}"
            self._poison(result)
            del result, inputs
            report.append({"index": index, "name": spec.name, "error": error, "seconds": seconds})
            if error is not None:
                break
        self.reply(ok=True, cases=report)

    def time_begin(self, target: str, sets: int, warmup: int) -> None:
        from quasar.bench.cases import make_inputs
        from quasar.bench.suite import timing_spec
        from quasar.bench.timing import input_sets_needed, tensor_bytes

        torch = self.torch

        if target == "baseline":
            from quasar.kernels import chunk_quasar as fn
        else:
            fn = self.entry
        spec = timing_spec(self.device.type, self.quick)
        probe = make_inputs(spec, 0, self.device)
        # On GPU the rotation must outgrow L2; on CPU a few sets suffice, and reusing buffers is what
        # lets the fresh values in them catch a cache keyed by data pointer.
        count = sets
        if self.device.type == "cuda":
            count = max(sets, input_sets_needed(tensor_bytes(probe.args()), self.device))
        buffers = [probe] + [make_inputs(spec, i, self.device) for i in range(1, count)]
        if self.device.type == "cuda":
            # Peak memory of the timed calls alone, beyond the inputs already allocated.
            self._sync()
            torch.cuda.reset_peak_memory_stats(self.device)
            self._mem_before = torch.cuda.memory_allocated(self.device)
        self._timing = {
            "fn": fn,
            "spec": spec,
            "buffers": buffers,
            "run": -1,
            "result": None,
            "target": target,
        }
        self.reply(ok=True, input_sets=count, warmup=warmup)

    def time_next(self, seed: int, save_previous: bool) -> None:
        from quasar.bench.cases import make_inputs

        t = self._timing
        assert t is not None, "time_begin first"
        error = None
        if t["result"] is not None or t["run"] >= 0:
            if save_previous:
                # The baseline saves too (then discards), so both phases carry the same overhead
                # and the parent can compare their wall-clock time per run.
                path = self.scratch / f"{'timed' if t['target'] == 'entry' else 'baseline'}_{t['run']}.pt"
                try:
                    error = self._save(t["result"], path, False)
                except Exception as exc:
                    error = f"bad_return_value: {_short(exc)}"
                if t["target"] != "entry":
                    path.unlink(missing_ok=True)
            self._poison(t["result"])
            t["result"] = None
        t["run"] += 1
        buffers = t["buffers"][t["run"] % len(t["buffers"])]
        # Fresh values in the same buffers: a cache keyed by shape or data pointer serves stale data.
        fresh = make_inputs(t["spec"], seed, self.device)
        for dst, src in zip(buffers.tensors(), fresh.tensors(), strict=True):
            if dst is not None:
                dst.copy_(src)
        self._sync()
        self.reply(ok=True, run=t["run"], error=error)

    def time_run(self) -> None:
        t = self._timing
        assert t is not None
        torch = self.torch
        args = t["buffers"][t["run"] % len(t["buffers"])].args()
        cuda = self.device.type == "cuda"
        error = None
        try:
            with torch.no_grad():
                if cuda:
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                t0 = _perf_counter()
                t["result"] = t["fn"](*args)
                if cuda:
                    end.record()
                self._sync()
                wall_ms = (_perf_counter() - t0) * 1e3
                ms = start.elapsed_time(end) if cuda else wall_ms
        except Exception as exc:
            error, ms, wall_ms = f"kernel_exception: {_short(exc)}", None, None
        peak = None
        if cuda and error is None:
            peak = (torch.cuda.max_memory_allocated(self.device) - self._mem_before) / 2**20
        self.reply(ok=error is None, ms=ms, wall_ms=wall_ms, error=error, peak_mem_mb=peak)

    def attach_arena(self, fd: int, slots: int, target: str) -> None:
        from quasar.bench.suite import timing_spec
        from quasar.evaluation.arena import Arena, slot_layout

        self._arena = Arena.attach(fd, slot_layout(timing_spec(self.device.type, self.quick)), slots)
        if target == "baseline":
            from quasar.kernels import chunk_quasar as fn
        else:
            fn = self.entry
        self._target_fn = fn
        self.reply(ok=True)

    def batch(self, slots: list[int]) -> None:
        from quasar.bench.check import check_tensor

        torch = self.torch
        arena = self._arena
        error = None
        t0 = _perf_counter()
        try:
            with torch.no_grad():
                for slot in slots:
                    q, k, v, beta = arena.inputs(slot)
                    result = self._target_fn(q, k, v, beta, None, False, None)
                    out = arena.output(slot)
                    if not isinstance(result, tuple | list) or len(result) != 2:
                        error = "bad_return_value: the kernel must return a tuple (o, final_state)"
                        break
                    o = result[0]
                    bad = check_tensor(o, "o", out.shape, out.dtype, out.device)
                    if bad is not None:
                        error = f"{bad.reason}: {bad.detail}"
                        break
                    out.copy_(o)
                    del result, o
                self._sync()
        except Exception as exc:
            error = f"kernel_exception: {_short(exc)}"
        # For the log only: the parent's clock is the one that counts.
        self.reply(ok=error is None, error=error, inside_ms=(_perf_counter() - t0) * 1e3)

    def handlers(self) -> dict[str, Any]:
        return {
            "start": self.start, "import": self.do_import, "cases": self.cases,
            "time": self.time_begin, "next": self.time_next, "run": self.time_run,
            "arena": self.attach_arena, "batch": self.batch, "ping": lambda: self.reply(ok=True),
        }  # fmt: skip

    def describe_error(self, exc: Exception) -> str:
        return f"worker_error: {_short(exc)}"


def main() -> None:
    Worker(int(sys.argv[1])).serve_and_exit()


if __name__ == "__main__":
    main()
