"""The bench: load a kernel, check it on every correctness case, then time it, the baseline and the layer.

``run_bench`` is what ``quasar bench`` and the validator's evaluation run. It stops at the first
failing case with verdict ``fail`` and a reason code (see ``schema``); only a kernel that passes every
case is timed. A ``fail`` is the submission's fault; ``error`` is the harness's own trouble.

Loading a submission imports its code into this process, so outside tests and a miner's own machine
this module runs inside the sandbox, and the trusted comparison of outputs happens outside it.
"""

from __future__ import annotations

import importlib
import platform
import secrets
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from quasar.reasons import REASON_ENTRY_POINT, REASON_HARNESS_ERROR, REASON_KERNEL_EXCEPTION

from .cases import (
    CaseSpec,
    case_seed,
    correctness_cases,
    make_inputs,
    reference_outputs,
)
from .check import check_result, poison_free_memory, poison_returned, tolerance_for
from .schema import (
    VERDICT_ERROR,
    VERDICT_FAIL,
    VERDICT_PASS,
    BenchReport,
    CaseResult,
    Timing,
)
from .timing import device_name, input_sets_needed, tensor_bytes, time_callable

DEFAULT_ENTRY = "fla.ops.quasar:chunk_quasar"
KernelFn = Callable[..., Any]

#: Layer benchmark of the original subnet: d=512, 8 heads x 64.
LAYER_HIDDEN, LAYER_HEADS, LAYER_HEAD_DIM = 512, 8, 64


class EntryPointError(Exception):
    """The kernel entry point could not be imported; the message says what to fix."""


def load_entry_point(spec: str = DEFAULT_ENTRY, repo_path: str | Path | None = None) -> KernelFn:
    """Import ``module:function`` (``function`` may be dotted), optionally from the repository ``repo_path``.

    With ``repo_path`` the repository goes first on ``sys.path`` and any already-imported copy of the
    module's top-level package is dropped, so the repository's own code is what gets loaded.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise EntryPointError(f"entry point {spec!r} must look like 'package.module:function'")
    where = ""
    if repo_path is not None:
        repo = Path(repo_path).resolve()
        if not repo.is_dir():
            raise EntryPointError(f"repository path {str(repo)!r} is not a directory; pass --repo PATH")
        where = f" from {repo}"
        if str(repo) in sys.path:
            sys.path.remove(str(repo))
        sys.path.insert(0, str(repo))
        top = module_name.split(".")[0]
        # The harness's own package stays loaded: dropping it would split its classes in two.
        if top != __name__.split(".")[0]:
            for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
                del sys.modules[name]
        importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise EntryPointError(
            f"cannot import {module_name!r}{where}: {exc}. Check --entry MODULE:FUNCTION and --repo PATH"
        ) from exc
    except Exception as exc:
        raise EntryPointError(
            f"importing {module_name!r}{where} failed: {type(exc).__name__}: {exc}"
        ) from exc
    fn: Any = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            raise EntryPointError(
                f"{module_name!r}{where} has no attribute {attr!r}; it must export the kernel"
            )
        fn = getattr(fn, part)
    if not callable(fn):
        raise EntryPointError(f"{spec!r} is a {type(fn).__name__}, not a function")
    return fn


def timing_spec(device_type: str, quick: bool) -> CaseSpec:
    """The op's benchmark shape (DESIGN §2) on GPU; a small shape past T = 2,048 on CPU.

    Its keys are ``mixed``: each timed run draws low-rank or tiny keys from its own seed, so every
    run depends on its whole history and the runs that are checked look like every other run.
    """
    if device_type == "cuda":
        return CaseSpec("bench", 1, 100_000, 8, 64, 64, torch.bfloat16, keys="mixed")
    return CaseSpec("bench_cpu", 1, 2048 if quick else 4096, 4, 32, 32, torch.float32, keys="mixed")


def extra_timing_specs(device_type: str) -> list[CaseSpec]:
    """Further reported shapes: H=16 with K=V=128, and T=1,000,000 (scaled down on CPU)."""
    if device_type == "cuda":
        return [
            CaseSpec("bench_h16_d128", 1, 100_000, 16, 128, 128, torch.bfloat16),
            CaseSpec("bench_t1m", 1, 1_000_000, 8, 64, 64, torch.bfloat16),
        ]
    return [
        CaseSpec("bench_cpu_h8_d64", 1, 2048, 8, 64, 64, torch.float32),
        CaseSpec("bench_cpu_long", 1, 16384, 4, 32, 32, torch.float32),
    ]


def _environment() -> dict[str, str]:
    env = {"python": platform.python_version(), "torch": torch.__version__}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = "absent"
    if torch.cuda.is_available():
        env["cuda"] = str(torch.version.cuda)
    return env


def _short(exc: BaseException, limit: int = 500) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Reporter:
    """Progress for people (rich, on stderr) or one log line per step (``--json``: stdout stays JSON)."""

    def __init__(self, json_mode: bool, total: int) -> None:
        self._console = Console(stderr=True)
        self._json = json_mode
        self._progress: Progress | None = None
        self._task: Any = None
        self._total = total

    @contextmanager
    def running(self) -> Iterator[_Reporter]:
        if self._json:
            yield self
            return
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), console=self._console, transient=True,
        )  # fmt: skip
        with self._progress:
            self._task = self._progress.add_task("bench", total=self._total)
            yield self

    def step(self, description: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=description)
        else:
            print(f"[bench] {description}", file=sys.stderr, flush=True)

    def done(self, message: str) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)
            self._progress.console.print(message)
        else:
            print(f"[bench] {message}", file=sys.stderr, flush=True)


def _arg_sets(spec: CaseSpec, seed: int, device: torch.device, first_index: int) -> list[tuple]:
    probe = make_inputs(spec, case_seed(seed, first_index), device)
    count = input_sets_needed(tensor_bytes(probe.args()), device)
    sets = [probe.args()]
    sets += [make_inputs(spec, case_seed(seed, first_index + i), device).args() for i in range(1, count)]
    return sets


def _time_op(
    fn: KernelFn, spec: CaseSpec, arg_sets: list[tuple], device: torch.device, quick: bool
) -> Timing:
    runs = (5 if quick else 10) if device.type == "cpu" else (20 if quick else 50)
    return time_callable(
        fn, arg_sets, device=device, runs=runs, warmup=1 if device.type == "cpu" else 5,
        shape=spec.shape_dict(), dtype=spec.dtype_name, tokens=spec.batch * spec.seq_len,
    )  # fmt: skip


def _time_layer(fn: KernelFn, device: torch.device, seed: int, quick: bool) -> Timing:
    from quasar.kernels.layer import QuasarAttention

    cuda = device.type == "cuda"
    seq_len = 100_000 if cuda else (512 if quick else 2048)
    dtype = torch.bfloat16 if cuda else torch.float32
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = QuasarAttention(LAYER_HIDDEN, LAYER_HEADS, LAYER_HEAD_DIM, op=fn)
    layer = layer.to(device=device, dtype=dtype).eval()
    arg_sets = [
        (torch.randn(1, seq_len, LAYER_HIDDEN, generator=gen).to(device=device, dtype=dtype),)
        for _ in range(3)
    ]
    timing = time_callable(
        lambda x: layer(x)[0], arg_sets, device=device,
        runs=(3 if quick else 5) if not cuda else 20, warmup=1 if not cuda else 3,
        shape={"B": 1, "T": seq_len, "hidden_size": LAYER_HIDDEN, "H": LAYER_HEADS, "head_dim": LAYER_HEAD_DIM},
        dtype=str(dtype).removeprefix("torch."), tokens=seq_len,
    )  # fmt: skip
    return timing


def run_bench(
    entry: KernelFn | str = DEFAULT_ENTRY,
    *,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    json_mode: bool = False,
    include_layer: bool = True,
    baseline: bool = True,
    quick: bool = False,
    repo_path: str | Path | None = None,
    extra_shapes: bool = False,
    entry_name: str | None = None,
) -> BenchReport:
    """Check ``entry`` on every correctness case, then time it (and the baseline, and the layer).

    Args:
        entry: the kernel, or a ``module:function`` spec loaded with ``load_entry_point``.
        device: ``cpu`` or ``cuda`` (decides the cases, the shapes and the timer).
        seed: seed of every random input of the run; a fresh random one when None (reported).
        json_mode: log plain lines to stderr instead of drawing rich progress.
        include_layer: also time QuasarAttention (d=512, 8 x 64) running ``entry`` as its op.
        baseline: also time ``quasar.kernels.chunk_quasar`` on the same inputs (``baseline_ms``, ``speedup``).
        quick: fewer timed runs and a shorter layer sequence; never fewer kinds of correctness case.
        repo_path: repository to import a string ``entry`` from.
        extra_shapes: also time the H=16/K=V=128 and T=1,000,000 shapes (scaled down on CPU).
        entry_name: how the report names the entry (default: the spec or the function's name).

    Returns:
        The report; ``verdict`` is ``pass``, ``fail`` (the kernel's fault, with a reason code) or
        ``error`` (the harness's own trouble).
    """
    started = time.perf_counter()
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device}; use 'cpu' or 'cuda'")
    if seed is None:
        seed = secrets.randbits(62)
    name = entry_name or (entry if isinstance(entry, str) else getattr(entry, "__qualname__", repr(entry)))
    report = BenchReport(
        verdict=VERDICT_PASS, entry=str(name), device=device_name(device), device_type=device.type,
        seed=seed, quick=quick, environment=_environment(),
    )  # fmt: skip

    def finish(verdict: str, reason: str | None = None, detail: str | None = None) -> BenchReport:
        report.verdict, report.reason, report.detail = verdict, reason, detail
        report.duration_s = time.perf_counter() - started
        return report

    if isinstance(entry, str):
        try:
            entry = load_entry_point(entry, repo_path)
        except EntryPointError as exc:
            return finish(VERDICT_FAIL, REASON_ENTRY_POINT, str(exc))

    cases = correctness_cases(device.type, quick)
    steps = len(cases) + 1 + (1 if include_layer else 0)
    reporter = _Reporter(json_mode, steps)
    try:
        with reporter.running():
            failure = _run_cases(entry, cases, seed, device, reporter, report)
            if failure is not None:
                return finish(VERDICT_FAIL, *failure)
            failure = _run_timings(entry, seed, device, quick, baseline, extra_shapes, reporter, report)
            if failure is not None:
                return finish(*failure)
            if include_layer:
                reporter.step("timing the layer")
                try:
                    report.layer = _time_layer(entry, device, seed, quick)
                except Exception as exc:
                    return finish(VERDICT_FAIL, REASON_KERNEL_EXCEPTION, f"layer: {_short(exc)}")
                if baseline:
                    from quasar.kernels import chunk_quasar

                    base = _time_layer(chunk_quasar, device, seed, quick)
                    report.layer.baseline_ms = base.median_ms
                    report.layer.speedup = base.median_ms / report.layer.median_ms
                reporter.done(f"layer: {report.layer.median_ms:.2f} ms")
    except Exception as exc:
        detail = "".join(traceback.format_exception_only(exc)).strip()
        return finish(VERDICT_ERROR, REASON_HARNESS_ERROR, detail[:1000])
    return finish(VERDICT_PASS)


def _run_cases(
    entry: KernelFn, cases: list[CaseSpec], seed: int, device: torch.device, reporter: _Reporter,
    report: BenchReport,
) -> tuple[str, str] | None:  # fmt: skip
    """Run every case; the (reason, detail) of the first failure, or None when all pass."""
    for index, spec in enumerate(cases):
        reporter.step(f"case {spec.name}")
        inputs = make_inputs(spec, case_seed(seed, index), device)
        # The trusted answer comes first, so a kernel that writes into its inputs cannot change it.
        expected_o, expected_final = reference_outputs(spec, inputs)
        tolerance = tolerance_for(spec.dtype)
        out_bytes = spec.batch * spec.seq_len * spec.heads * spec.value_dim * inputs.q.element_size()
        poison_free_memory(device, out_bytes)
        t0 = time.perf_counter()
        result: Any = None
        try:
            with torch.no_grad():
                result = entry(*inputs.args())
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
        except Exception as exc:
            outcome_reason, outcome_detail = REASON_KERNEL_EXCEPTION, _short(exc)
            report.cases.append(
                CaseResult(
                    spec.name, spec.shape_dict(), spec.dtype_name, tolerance, spec.reference_name,
                    passed=False, reason=outcome_reason, detail=outcome_detail,
                    seconds=time.perf_counter() - t0,
                )
            )  # fmt: skip
            reporter.done(f"[red]✗[/red] {spec.name}: {outcome_detail}")
            return outcome_reason, f"case {spec.name}: {outcome_detail}"
        seconds = time.perf_counter() - t0
        outcome = check_result(
            result, expected_o=expected_o, expected_final=expected_final, out_dtype=spec.dtype,
            device=inputs.q.device, tolerance=tolerance, inputs=inputs.tensors(), bounds=spec.bounds,
        )  # fmt: skip
        if isinstance(result, tuple | list):
            poison_returned(*result)
        report.cases.append(
            CaseResult(
                spec.name, spec.shape_dict(), spec.dtype_name, tolerance, spec.reference_name,
                passed=outcome.passed, rel_error=outcome.rel_error,
                final_state_rel_error=outcome.final_state_rel_error,
                worst_slice_rel_error=outcome.worst_slice_rel_error, reason=outcome.reason,
                detail=outcome.detail, seconds=seconds,
            )
        )  # fmt: skip
        del result, inputs, expected_o, expected_final
        if not outcome.passed:
            reporter.done(f"[red]✗[/red] {spec.name}: {outcome.detail}")
            return outcome.reason or REASON_KERNEL_EXCEPTION, f"case {spec.name}: {outcome.detail}"
        reporter.done(f"[green]✓[/green] {spec.name}: rel error {outcome.rel_error:.2e}")
    return None


def _run_timings(
    entry: KernelFn, seed: int, device: torch.device, quick: bool, baseline: bool, extra_shapes: bool,
    reporter: _Reporter, report: BenchReport,
) -> tuple[str, str, str] | None:  # fmt: skip
    """Time the entry (and baseline) at the benchmark shape and any extra shapes; a failure triple or None."""
    from quasar.kernels import chunk_quasar

    specs = [timing_spec(device.type, quick)] + (extra_timing_specs(device.type) if extra_shapes else [])
    for number, spec in enumerate(specs):
        reporter.step(f"timing {spec.name}")
        arg_sets = _arg_sets(spec, seed, device, first_index=10_000 * (number + 1))
        try:
            timing = _time_op(entry, spec, arg_sets, device, quick)
        except Exception as exc:
            return VERDICT_FAIL, REASON_KERNEL_EXCEPTION, f"timing {spec.name}: {_short(exc)}"
        if baseline:
            try:
                base = _time_op(chunk_quasar, spec, arg_sets, device, quick)
            except Exception as exc:
                return VERDICT_ERROR, REASON_HARNESS_ERROR, f"baseline timing {spec.name}: {_short(exc)}"
            timing.baseline_ms = base.median_ms
            timing.speedup = base.median_ms / timing.median_ms if timing.median_ms > 0 else None
        del arg_sets
        if number == 0:
            report.timing = timing
            reporter.done(f"op: {timing.median_ms:.3f} ms")
        else:
            report.extra_timings.append(timing)
    return None
