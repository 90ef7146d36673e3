"""``python -m quasar.bench``: check a QuasarAttention kernel, then time it against the baseline.

    python -m quasar.bench [--entry MOD:FN] [--repo PATH] [--device cpu|cuda] [--seed N] [--json]
                           [--no-layer] [--no-baseline] [--quick] [--all-shapes]

People get rich progress and a table; ``--json`` prints the report (``quasar.bench.schema``) alone on
stdout, with logs on stderr. Exit status: 0 pass, 1 fail (the kernel's fault), 2 error (the harness's
own trouble, or bad arguments). ``quasar bench`` calls ``main``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch
from rich.console import Console
from rich.table import Table

from .schema import VERDICT_FAIL, VERDICT_PASS, BenchReport
from .suite import DEFAULT_ENTRY, run_bench

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m quasar.bench",
        description="Check a chunk_quasar kernel against the reference on fresh random inputs, then time it.",
    )
    parser.add_argument(
        "--entry", default=DEFAULT_ENTRY, help=f"kernel as MODULE:FUNCTION (default {DEFAULT_ENTRY})"
    )
    parser.add_argument(
        "--repo", default=None, help="repository to import the entry from (default: sys.path)"
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available, else cpu"
    )
    parser.add_argument("--seed", type=int, default=None, help="input seed (default: fresh random, reported)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON alone on stdout")
    parser.add_argument("--no-layer", action="store_true", help="skip timing the QuasarAttention layer")
    parser.add_argument("--no-baseline", action="store_true", help="skip timing the baseline kernel")
    parser.add_argument(
        "--quick", action="store_true", help="fewer timed runs (every correctness case still runs)"
    )
    parser.add_argument("--all-shapes", action="store_true", help="also time H=16/K=V=128 and T=1,000,000")
    return parser


_SHORT_DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64"}
_SHAPE_LETTERS = {"hidden_size": "D", "head_dim": "d"}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _shape(shape: dict) -> str:
    return " ".join(f"{_SHAPE_LETTERS.get(k, k)}{v}" for k, v in shape.items() if k not in ("seqlens", "N"))


def render(report: BenchReport, console: Console) -> None:
    """The report as tables for people."""
    cases = Table(title=f"correctness ({report.device}, seed {report.seed})")
    for column in ("case", "shape", "dtype", "rel error", "state rel error", "tolerance", "result"):
        cases.add_column(column)
    for case in report.cases:
        state = "-" if case.final_state_rel_error is None else f"{case.final_state_rel_error:.2e}"
        rel = "-" if case.rel_error is None else f"{case.rel_error:.2e}"
        result = "[green]pass[/green]" if case.passed else f"[red]{case.reason}[/red]"
        cases.add_row(
            case.name,
            _shape(case.shape),
            _SHORT_DTYPES.get(case.dtype, case.dtype),
            rel,
            state,
            f"{case.tolerance:.0e}",
            result,
        )
    console.print(cases)

    timings = [("op", t) for t in ([report.timing] if report.timing else []) + report.extra_timings]
    if report.layer:
        timings.append(("layer", report.layer))
    if timings:
        table = Table(title="timing (ms)")
        columns = ("what", "shape", "dtype", "median", "p10-p90", "baseline", "speed-up", "tok/s", "MiB")
        for column in columns:
            table.add_column(column)
        for what, t in timings:
            table.add_row(
                what, _shape(t.shape), _SHORT_DTYPES.get(t.dtype, t.dtype), _ms(t.median_ms),
                f"{_ms(t.p10_ms)}-{_ms(t.p90_ms)}", _ms(t.baseline_ms),
                "-" if t.speedup is None else f"{t.speedup:.2f}x",
                "-" if t.tokens_per_s is None else f"{t.tokens_per_s:,.0f}",
                "-" if t.peak_mem_mb is None else f"{t.peak_mem_mb:.0f}",
            )  # fmt: skip
        console.print(table)
    colour = "green" if report.verdict == VERDICT_PASS else "red"
    line = f"[{colour}]{report.verdict}[/{colour}]"
    if report.reason:
        line += f" ({report.reason}): {report.detail}"
    console.print(line)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench as the command line asks; returns the exit status (0 pass, 1 fail, 2 error)."""
    args = build_parser().parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        report = run_bench(
            args.entry, device=device, seed=args.seed, json_mode=args.json, include_layer=not args.no_layer,
            baseline=not args.no_baseline, quick=args.quick, repo_path=args.repo, extra_shapes=args.all_shapes,
        )  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        sys.stdout.write(report.to_json() + "\n")
        sys.stdout.flush()
    else:
        render(report, Console())
    if report.verdict == VERDICT_PASS:
        return EXIT_PASS
    return EXIT_FAIL if report.verdict == VERDICT_FAIL else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
