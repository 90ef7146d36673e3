"""The sandboxed side of an evaluation: imports the submission and runs it as the parent directs.

``python -I -m quasar.evaluation.worker REPLY_FD`` runs inside the sandbox. It imports torch, the
standard library, ``quasar.bench``, ``quasar.kernels`` and ``quasar.reasons`` only, and the
submission's entry point when told to. Everything it learns comes from the parent, one JSON command
per line on stdin, only when it is needed; every reply is one JSON line on ``REPLY_FD`` (stdout is
the submission's log stream).

Commands, in the order the parent sends them:

``start``   device, entry, repo, quick, kernel_cache. Seeds this process's Triton cache from the
            validator's read-only cache of the baseline's compiled kernels (when given: the
            baseline's worker), loads torch; replies with versions and the device name.
``warm``    seed. The baseline's worker only: runs every correctness case with the trusted kernel
            and keeps nothing but the compiled kernels.
``export``  The baseline's worker only: copies its Triton cache into the scratch dir, from where
            the parent adds it to the validator's cache.
``import``  kernel_cache. Seeds the Triton cache (the submission's worker: by now the baseline's
            worker has filled the validator's cache), then imports the entry point.
``cases``   seed. Runs every correctness case and saves each ``(o, final_state)`` to the scratch
            dir with ``torch.save``; the trusted checker recomputes them elsewhere.
``arena``   fd, slots, target (``baseline`` or ``entry``), pool_bytes. Maps the parent's shared
            buffers of timed runs (``arena``: memfd on CPU, CUDA driver memory on GPU) from the
            inherited ``fd``; on GPU, makes the pool area after the slots the memory pool timed calls
            allocate from (``output_pool``).
``batch``   slots. Calls the target on the inputs of each slot, back to back, and replies with where
            each output lies (``outputs``: byte offsets in the shared memory): in the pool area where
            the kernel allocated it (GPU), else copied into the slot (``copied`` counts those). The
            parent writes the inputs while this process is frozen, thaws it, sends ``batch``, freezes
            it again on the reply and only then reads the outputs: the whole span is on the parent's
            clock, and nothing here runs outside it (see ``timed_runs``).
``exit``

Outputs are saved only when they are plain ``torch.Tensor`` objects (a subclass could compute lazily
or lie about its values); after saving, the tensors the kernel returned are overwritten with NaN, so
a kernel that hands back a cached buffer serves NaN next time. Nothing the worker says about
correctness is trusted: the checker reads the saved tensors with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from quasar.evaluation.protocol import CommandServer
from quasar.reasons import REASON_BAD_RETURN, REASON_KERNEL_EXCEPTION, REASON_TENSOR_SUBCLASS

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
        self._mem_before = 0

    # --- commands --------------------------------------------------------------------------------
    def start(
        self, device: str, entry: str, repo: str, quick: bool = False, kernel_cache: str | None = None
    ) -> None:
        os.environ.setdefault("TRITON_CACHE_AUTOTUNING", "1")
        self._seed_cache(kernel_cache)
        import torch

        from quasar.bench.timing import device_name

        self.torch = torch
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.init()
        self.entry_spec, self.repo, self.quick = entry, repo, quick
        self.reply(ok=True, torch=torch.__version__, device_name=device_name(self.device))

    def _seed_cache(self, kernel_cache: str | None) -> None:
        """Compiled kernels and autotuning choices come from the validator's cache when their sources
        match, so both sides run the baseline's kernels with the same picks; a submission may change
        its own copy, never the validator's."""
        if kernel_cache and os.environ.get("TRITON_CACHE_DIR"):
            shutil.copytree(kernel_cache, os.environ["TRITON_CACHE_DIR"], dirs_exist_ok=True)

    def do_import(self, kernel_cache: str | None = None) -> None:
        from quasar.bench.suite import EntryPointError, load_entry_point

        # The submission's worker seeds its cache here, after the baseline's worker has filled the
        # validator's cache: seeded at its start, the first evaluation of a new baseline would find
        # it empty and autotune on its own (other picks, another speed than the baseline's).
        self._seed_cache(kernel_cache)
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
            return f"{REASON_BAD_RETURN}: the kernel must return a tuple (o, final_state)"
        o, final = result
        if not self._plain(o) or (want_final and not self._plain(final)):
            kind = type(o).__name__ if not self._plain(o) else type(final).__name__
            return f"{REASON_TENSOR_SUBCLASS}: returned a {kind}; return plain torch.Tensor objects"
        if o is None:
            return f"{REASON_BAD_RETURN}: o is None"
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
        self.reply(ok=True, cases=self._run_cases(self.entry, seed, save=True))

    def warm(self, seed: int) -> None:
        from quasar.kernels import chunk_quasar

        cases = self._run_cases(chunk_quasar, seed, save=False)
        errors = [c["error"] for c in cases if c["error"]]
        self.reply(ok=not errors, error=errors[0] if errors else None)

    def export_cache(self) -> None:
        source = os.environ.get("TRITON_CACHE_DIR")
        if source and os.path.isdir(source):
            shutil.copytree(source, self.scratch / "kernel-cache", dirs_exist_ok=True)
        self.reply(ok=True)

    def _run_cases(self, fn: Any, seed: int, *, save: bool) -> list[dict[str, Any]]:
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
                    result = fn(*inputs.args())
                self._sync()
            except Exception as exc:
                error = f"{REASON_KERNEL_EXCEPTION}: {_short(exc)}"
            seconds = _perf_counter() - t0
            if error is None and save:
                try:
                    error = self._save(result, self.scratch / f"case_{index}.pt", spec.output_final_state)
                except Exception as exc:
                    error = f"{REASON_BAD_RETURN}: {_short(exc)}"
            self._poison(result)
            del result, inputs
            report.append({"index": index, "name": spec.name, "error": error, "seconds": seconds})
            if error is not None:
                break
        return report

    def attach_arena(self, fd: int, slots: int, target: str, pool_bytes: int = 0) -> None:
        from quasar.bench.suite import timing_spec
        from quasar.evaluation.arena import Arena, slot_layout

        spec = timing_spec(self.device.type, self.quick)
        self._arena = Arena.attach(fd, slot_layout(spec), slots, self.device, pool_bytes)
        self._pool = None
        if self.device.type == "cuda":
            from quasar.evaluation.output_pool import OutputPool

            if pool_bytes:
                self._pool = OutputPool(self._arena.pool_address, pool_bytes, self.device)
            # Peak memory of the timed calls alone, beyond what is allocated now (for the report).
            self._sync()
            self.torch.cuda.reset_peak_memory_stats(self.device)
            self._mem_before = self.torch.cuda.memory_allocated(self.device)
        if target == "baseline":
            from quasar.kernels import chunk_quasar as fn
        else:
            fn = self.entry
        self._target_fn = fn
        self._held: list[Any] = []
        self.reply(ok=True)

    def _place(self, o: Any, slot: int) -> tuple[int, bool]:
        """Where the parent reads call ``slot``'s output (a byte offset in the shared memory), and
        whether it had to be copied there: an output the kernel allocated in the pool area stays
        where it is (and is held until the next batch, so nothing reuses its memory before the parent
        has read it); anything else is copied into the slot's own output field."""
        arena = self._arena
        offset = self._pool.offset_of(o) if self._pool is not None else None
        if offset is not None:
            self._held.append(o)
            return arena.pool_offset + offset, False
        arena.output(slot).copy_(o)
        return arena.output_offset(slot), True

    def batch(self, slots: list[int]) -> None:
        from quasar.bench.check import check_tensor

        torch = self.torch
        arena = self._arena
        # The previous batch's outputs have been read: their memory goes back to the pool.
        self._held.clear()
        error = None
        offsets: list[int] = []
        copied = 0
        serving = self._pool.serving() if self._pool is not None else contextlib.nullcontext()
        t0 = _perf_counter()
        try:
            with torch.no_grad(), serving:
                for slot in slots:
                    q, k, v, beta = arena.inputs(slot)
                    result = self._target_fn(q, k, v, beta, None, False, None)
                    out = arena.output(slot)
                    if not isinstance(result, tuple | list) or len(result) != 2:
                        error = f"{REASON_BAD_RETURN}: the kernel must return a tuple (o, final_state)"
                        break
                    o = result[0]
                    bad = check_tensor(o, "o", out.shape, out.dtype, out.device)
                    if bad is not None:
                        error = f"{bad.reason}: {bad.detail}"
                        break
                    offset, was_copied = self._place(o, slot)
                    offsets.append(offset)
                    copied += was_copied
                    del result, o
                self._sync()
        except Exception as exc:
            error = f"{REASON_KERNEL_EXCEPTION}: {_short(exc)}"
        peak = None
        if self.device.type == "cuda":
            peak = (torch.cuda.max_memory_allocated(self.device) - self._mem_before) / 2**20
        # For the log only: the parent's clock is the one that counts.
        self.reply(
            ok=error is None, error=error, outputs=offsets, copied=copied,
            inside_ms=(_perf_counter() - t0) * 1e3, peak_mem_mb=peak,
        )  # fmt: skip

    def handlers(self) -> dict[str, Any]:
        return {
            "start": self.start, "import": self.do_import, "cases": self.cases, "arena": self.attach_arena,
            "warm": self.warm, "export": self.export_cache, "batch": self.batch, "ping": lambda: self.reply(ok=True),
        }  # fmt: skip

    def describe_error(self, exc: Exception) -> str:
        return f"worker_error: {_short(exc)}"


def main() -> None:
    Worker(int(sys.argv[1])).serve_and_exit()


if __name__ == "__main__":
    main()
