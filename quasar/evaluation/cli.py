"""``quasar evaluate``: what validators run on a revealed submission, and what miners run on their own.

    quasar evaluate --repo-url URL --commit SHA [--json] [--device cpu|cuda] [--seed N] [--quick]

``--json`` prints the report alone on stdout (logs and the sandbox warnings go to stderr). Exit status:
0 pass, 1 fail (the submission's fault), 2 error (the validator's own trouble, or bad arguments).
Settings (docs/security.md): QUASAR_DEV_MODE, ALLOWED_REPO_HOSTS, QUASAR_ALLOW_UNSANDBOXED,
EVALUATION_TIMEOUT_SECONDS, FETCH_TIMEOUT_SECONDS, SANDBOX_MEMORY_MB, SANDBOX_MAX_PIDS,
SANDBOX_CGROUP_PARENT.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer
from rich.console import Console

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def evaluate_command(
    repo_url: Annotated[
        str, typer.Option("--repo-url", help="The submission's repository (https; local in dev mode).")
    ],
    commit: Annotated[str, typer.Option("--commit", help="The full 40-hex commit SHA to evaluate.")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON alone on stdout.")
    ] = False,
    device: Annotated[str, typer.Option(help="cpu or cuda (cuda:N pins GPU N).")] = "auto",
    seed: Annotated[int | None, typer.Option(help="Seed of the correctness inputs (default: fresh).")] = None,
    quick: Annotated[
        bool, typer.Option(help="Fewer timed runs (every correctness case still runs).")
    ] = False,
) -> None:
    """Fetch a submission, run it in the sandbox, check it against the trusted reference, and time it."""
    from quasar.config import get_settings
    from quasar.devices import parse_device, resolve_auto

    from .evaluate import EvaluationOptions, evaluate

    err = Console(stderr=True)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    settings = get_settings()
    try:
        chosen = resolve_auto(parse_device(device, name="--device"))
    except ValueError:
        err.print(f"[red]error:[/] --device must be cpu, cuda or cuda:N, not {device!r}")
        raise typer.Exit(EXIT_ERROR) from None
    options = EvaluationOptions.from_settings(
        settings,
        device=chosen.kind,
        gpu_index=((chosen.index or 0) if chosen.kind == "cuda" else None),
        seed=seed,
        quick=quick,
    )
    if settings.quasar_allow_unsandboxed:
        err.print(
            "[bold red]WARNING:[/] QUASAR_ALLOW_UNSANDBOXED is set: with SANDBOX_REQUIRE=none and no working "
            "sandbox, miner code runs unisolated"
        )
    report = evaluate(repo_url, commit, options)
    for warning in report.warnings:
        err.print(f"[bold red]WARNING:[/] {warning}")
    if json_output:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")
        sys.stdout.flush()
    else:
        colour = {"pass": "green", "fail": "red"}.get(report.verdict, "yellow")
        err.print(f"sandbox: {report.sandbox}  kernel_tree_hash: {report.kernel_tree_hash}")
        for case in report.cases + report.timed_checks:
            rel = "-" if case.rel_error is None else f"{case.rel_error:.2e}"
            err.print(f"  {case.name:24s} {rel:>10s}  {'ok' if case.passed else case.reason}")
        if report.median_ms is not None:
            timing = report.timing
            interval = ""
            if timing is not None and timing.speedup_ci_low is not None:
                interval = f" (95% interval {timing.speedup_ci_low:.2f}-{timing.speedup_ci_high:.2f}x"
                interval += ", inconclusive: never counts)" if timing.inconclusive else ")"
            err.print(
                f"  median {report.median_ms:.3f} ms, baseline {report.baseline_ms:.3f} ms, "
                f"speed-up {report.speedup:.2f}x{interval}"
            )
        line = f"[{colour}]{report.verdict}[/{colour}]"
        if report.reason:
            line += f" ({report.reason}): {report.detail}"
        Console().print(line)
    if report.verdict == "pass":
        raise typer.Exit(EXIT_PASS)
    raise typer.Exit(EXIT_FAIL if report.verdict == "fail" else EXIT_ERROR)
