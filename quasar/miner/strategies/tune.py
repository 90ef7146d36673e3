"""``tune``: search the launch settings the kernel declares, on this GPU, and commit the fastest as its tuning.

The kernel declares its knobs (segment length, programs per SM, each Triton kernel's warps and stages)
in ``fla/ops/quasar/fast/tuning.py`` and reads its settings from ``fast/tuned.json``, by GPU name. One
cycle of ``tune``:

1. starts the probe (``probe.py``) on HEAD's kernel, isolated as every bench is (``helper.py``), and
   reads from it the GPU's name, the declared knobs and the current entry for this GPU (the start);
2. searches (``search.py``): coordinate descent over the declared values, each setting timed once
   at the benchmark shape by the probe (a few calls, CUDA events, inputs rotated past L2; settings
   that launch the same kernels are timed once), with a rich progress bar over the candidates;
3. judges the finalists, fastest first, with the bench validators use (``Context.try_change``): the
   winner is written into ``tuned.json`` under this GPU's name and committed only if it passes every
   correctness case and is MINER_MIN_IMPROVEMENT faster than HEAD; the first kept one ends the cycle;
4. logs a table of everything tried (setting, ms, pruned / failed / kept / rejected).

A kernel tree searched once is not searched again in this process; a kept setting changes the tree,
so the next cycle searches again from it. Tuning needs a GPU: elsewhere the cycle says so and tunes
nothing (the knobs are launch settings of the Triton kernels, which only run on CUDA).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from quasar.miner.strategies.base import Context, Outcome
from quasar.miner.strategies.helper import Helper, HelperError, start_helper
from quasar.miner.strategies.search import (
    KEPT,
    REJECTED,
    DeclarationError,
    SearchResult,
    Setting,
    complete,
    describe_change,
    parse_declaration,
    render,
    search,
    summary_table,
    table_with,
)
from quasar.miner.workspace import KERNEL_DIR

log = logging.getLogger("quasar.miner.tune")

PROBE_MODULE = "quasar.miner.strategies.probe"
#: The table of tuned settings in the workspace (``fast/tuning.py`` reads it).
TABLE_PATH = f"{KERNEL_DIR}/fast/tuned.json"
#: Finalists judged by the bench per cycle (each bench takes minutes on a GPU).
FINALISTS = 3
#: Seconds a probe command may take: importing the kernel, and a timing (its first call compiles and
#: autotunes every kernel).
DESCRIBE_TIMEOUT_S, LAUNCH_TIMEOUT_S, TIME_TIMEOUT_S = 300.0, 60.0, 900.0


def bench_device(setting: str) -> str:
    """'cpu' or 'cuda': where the bench will run for the DEVICE setting (``quasar.devices``)."""
    from quasar.devices import parse_device, resolve_auto

    return resolve_auto(parse_device(setting)).kind


class TuneStrategy:
    name = "tune"

    def __init__(self, device: str = "auto", *, finalists: int = FINALISTS, rounds: int = 2) -> None:
        self.device = device
        self.finalists = finalists
        self.rounds = rounds
        self._searched: set[str] = set()

    def improve(self, ctx: Context) -> list[Outcome]:
        if bench_device(self.device) != "cuda":
            log.info(
                "tune: tuning needs a GPU (DEVICE=%s): the knobs are launch settings of the Triton kernels; "
                "nothing tuned (MINER_STRATEGY=manual or agent work on CPU)", self.device,
            )  # fmt: skip
            return []
        return self.tune(ctx)

    def tune(self, ctx: Context, measure: Callable[[Setting], float] | None = None) -> list[Outcome]:
        """Search from HEAD's settings for this GPU and judge the finalists; ``measure`` stands in for
        the probe's GPU timing (tests), everything else is as on the GPU."""
        if ctx.workspace.kernel_dirty():
            # Judging writes the table and puts the kernel back after a rejection: never over someone's edits.
            log.warning("tune: %s has uncommitted changes; commit or discard them to tune", KERNEL_DIR)
            return []
        tree = ctx.workspace.kernel_tree("HEAD")
        if tree in self._searched:
            log.info("tune: kernel %s was searched already; nothing new to try", tree[:12])
            return []
        try:
            with ctx.snapshot("HEAD") as root, start_helper(ctx.bench, root, PROBE_MODULE) as probe:
                gpu, result = self._search(ctx, probe, measure)
        except (HelperError, DeclarationError) as exc:
            log.warning("tune: cannot search the kernel's knobs: %s", exc)
            return []
        self._searched.add(tree)
        if result.stopped:
            log.warning("tune: the search ended early: %s", result.stopped)
        outcomes = self._judge(ctx, gpu, result)
        best = result.best
        log.info(
            "tune on %s: %d settings tried; start %s ms, best first timing %s ms (%s); %d finalist(s), %d kept\n%s",
            gpu, len(result.trials), _ms(result.start.ms), _ms(best.ms),
            describe_change(result.start.setting, best.setting), len(result.finalists),
            sum(o.kept for o in outcomes), render(summary_table(result, f"tune on {gpu}: what was tried")),
        )  # fmt: skip
        return outcomes

    def _search(
        self, ctx: Context, probe: Helper, measure: Callable[[Setting], float] | None
    ) -> tuple[str, SearchResult]:
        info = probe.call("describe", DESCRIBE_TIMEOUT_S, repo=probe.repo)
        knobs = parse_declaration(info.get("knobs"))
        gpu = str(info.get("device"))
        table = info.get("table") if isinstance(info.get("table"), dict) else {}
        start = complete(knobs, table.get(gpu) or {})

        def timed(setting: Setting) -> float:
            return float(probe.call("time", TIME_TIMEOUT_S, setting=setting)["ms"])

        def launched(setting: Setting) -> str | None:
            return probe.call("launch", LAUNCH_TIMEOUT_S, setting=setting).get("launch")

        log.info(
            "tune: searching %d knobs of %s on %s from %s", len(knobs), KERNEL_DIR, gpu,
            "its tuned settings" if gpu in table else "the defaults",
        )  # fmt: skip
        result = search(
            knobs, start, measure or timed, launch_of=launched, finalists=self.finalists,
            # The bench asks for the full margin; the first timing is noisier, so half of it gets a finalist judged.
            min_gain=ctx.min_improvement / 2, rounds=self.rounds, stop=ctx.stop,
        )  # fmt: skip
        return gpu, result

    def _judge(self, ctx: Context, gpu: str, result: SearchResult) -> list[Outcome]:
        """Each finalist, fastest first, written into the table and benched; the first kept one ends it."""
        outcomes: list[Outcome] = []
        path = ctx.workspace.path / TABLE_PATH
        for trial in result.finalists:
            if ctx.stop.is_set():
                break
            current = path.read_text() if path.is_file() else None
            path.write_text(table_with(current, gpu, trial.setting))
            outcome = ctx.try_change(f"tune: {gpu}: {describe_change(result.start.setting, trial.setting)}")
            outcomes.append(outcome)
            if outcome.kept:
                trial.status, trial.note = KEPT, f"committed {(outcome.commit or '')[:12]}: {outcome.reason}"
                break
            trial.status, trial.note = REJECTED, outcome.reason
        return outcomes


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
