"""GPU check of the miner's tuner: search the fast kernel's declared knobs at the benchmark shape, then
time the best setting found against the shipped defaults (one device call, about 5 minutes).

1. The tuner's search (``quasar.miner.strategies.search``) over the knobs ``quasar/kernels/fast/tuning.py``
   declares, from the defaults, each setting timed by the tuner's probe (``quasar.miner.strategies.probe``:
   the bench's timing shape B=1, T=100,000, H=8, K=V=64, bf16 and inputs, 20 calls with CUDA events after
   warm-up, inputs rotated past L2, output checked against the defaults'). Settings that launch the
   same kernels are timed once. The search stops after TUNE_BUDGET_S seconds (default 240).
2. The best setting found vs the defaults with the same timing, TUNE_AB_ROUNDS (default 7) interleaved
   rounds of 100 calls each.
3. The winner written by the tuner's writer into ``tuned.json`` of a ``quasar kernel init`` repository
   in a temp dir; that repository's kernel, in a child process, must read it for this GPU and launch
   with it (its ``chunk_quasar`` bit-equal to ``quasar_fwd`` given the setting explicitly).

The miner's own parts (the sandbox, the bench that judges finalists, the commit) are not involved: on
a miner they run around exactly this search. Imports torch, triton, the standard library, rich and
``quasar.kernels`` / ``quasar.bench`` / ``quasar.miner.strategies.{search,probe}`` only.

Usage, from the repository root: ``PYTHONUNBUFFERED=1 OUT=/some/dir python3 scripts/gpu_tune.py``.
Writes ``$OUT/gpu_tune.jsonl`` (default: the current directory): one line per candidate, then one
summary line; prints one line per candidate as it goes and the summary table at the end.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import triton

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from quasar.kernels.fast import tuning  # noqa: E402
from quasar.kernels.template import init_kernel_repo  # noqa: E402
from quasar.miner.strategies.probe import KernelProbe  # noqa: E402
from quasar.miner.strategies.search import (  # noqa: E402
    Setting,
    Trial,
    complete,
    describe_change,
    parse_declaration,
    render,
    search,
    summary_table,
    table_with,
)

OUT = Path(os.environ.get("OUT", "."))
BUDGET_S = float(os.environ.get("TUNE_BUDGET_S", "240"))
AB_ROUNDS = int(os.environ.get("TUNE_AB_ROUNDS", "7"))
PACKAGE = "quasar.kernels.fast"
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def trial_line(trial: Trial, start: Setting) -> dict:
    return {
        "kind": "candidate", "number": trial.number, "setting": trial.setting,
        "changes": describe_change(start, trial.setting), "ms": trial.ms, "status": trial.status,
        "note": trial.note, "launch": json.loads(trial.launch) if trial.launch else None,
    }  # fmt: skip


def compare(probe: KernelProbe, best: Setting, defaults: Setting) -> dict:
    """Median ms of best and defaults over interleaved rounds (drift hits both alike)."""
    times: dict[str, list[float]] = {"best": [], "defaults": []}
    for number in range(AB_ROUNDS):
        for name, setting in (("best", best), ("defaults", defaults))[:: 1 if number % 2 == 0 else -1]:
            times[name].append(probe.time(setting))
        log(
            f"A/B round {number + 1}/{AB_ROUNDS}: best {times['best'][-1]:.4f} ms, defaults {times['defaults'][-1]:.4f} ms"
        )
    best_ms, default_ms = statistics.median(times["best"]), statistics.median(times["defaults"])
    return {"best_ms": best_ms, "defaults_ms": default_ms, "speedup": default_ms / best_ms, "rounds": times}


CHILD = """
import json, sys, torch
from fla.ops.quasar.fast import chunk_quasar, launch_settings, quasar_fwd, tuning
from quasar.bench.cases import make_inputs
from quasar.bench.suite import timing_spec
winner = tuning.check(json.loads(sys.argv[1]))
device = torch.device("cuda")
spec = timing_spec("cuda", quick=False)
q, k, v, beta, _, _, _ = make_inputs(spec, 1, device).args()
o_table, _ = chunk_quasar(q, k, v, beta)
o_given, _ = quasar_fwd(q, k, v, beta, None, False, None, None, settings=winner)
print(json.dumps({
    "gpu": tuning.device_name(device),
    "table_settings_are_the_winner": tuning.settings_for(device) == winner,
    "launch": launch_settings(spec.batch, spec.seq_len, spec.heads, None, device, tuning.settings_for(device)),
    "bit_equal_to_the_winner_given_explicitly": torch.equal(o_table, o_given),
}))
"""


def check_table_in_a_workspace(gpu: str, winner: Setting) -> dict:
    """Step 3: the winner through a template repository's tuned.json, read by its own kernel."""
    with tempfile.TemporaryDirectory(prefix="quasar-tune-ws-") as tmp:
        repo = Path(tmp) / "kernel"
        init_kernel_repo(repo)
        table = repo / "fla" / "ops" / "quasar" / "fast" / "tuned.json"
        table.write_text(table_with(table.read_text(), gpu, winner))
        env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{ROOT}"}
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(winner)], cwd=repo, env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        if proc.returncode != 0:
            return {"error": proc.stderr.strip()[-2000:]}
        return {"table": json.loads(table.read_text()), **json.loads(proc.stdout.strip().splitlines()[-1])}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / "gpu_tune.jsonl"
    summary: dict = {
        "kind": "summary", "python": platform.python_version(), "torch": torch.__version__,
        "triton": triton.__version__, "budget_s": BUDGET_S,
    }  # fmt: skip
    if not torch.cuda.is_available():
        print("gpu_tune: tuning needs a CUDA device; none is visible", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    summary["gpu"] = tuning.device_name(device)
    summary["sms"] = torch.cuda.get_device_properties(device).multi_processor_count
    log(f"{summary['gpu']} ({summary['sms']} SMs), torch {torch.__version__}, triton {triton.__version__}")

    probe = KernelProbe(PACKAGE)
    info = probe.describe()
    knobs = parse_declaration(info["knobs"])
    defaults = complete(knobs, {})
    summary["shape"], summary["dtype"] = info["shape"], info["dtype"]
    log(
        f"{len(knobs)} knobs, {sum(len(k.candidates) for k in knobs)} values; shape {info['shape']} {info['dtype']}"
    )

    def timed(setting: Setting) -> float:
        return probe.time(setting)

    def announce(trial: Trial) -> None:
        ms = "-" if trial.ms is None else f"{trial.ms:.4f} ms"
        note = f" ({trial.note})" if trial.note else ""
        log(f"#{trial.number} {describe_change(defaults, trial.setting)}: {ms} {trial.status}{note}")

    log("search: the first timing compiles and autotunes every kernel (a minute or two)")
    searched = time.monotonic()
    result = search(knobs, defaults, timed, launch_of=probe.launch, budget_s=BUDGET_S, on_trial=announce)
    summary["search_s"] = time.monotonic() - searched
    with out.open("w") as sink:
        for trial in result.trials:
            sink.write(json.dumps(trial_line(trial, defaults)) + "\n")
    print(render(summary_table(result, f"gpu_tune on {summary['gpu']}: what was tried")), flush=True)

    best = result.best
    summary.update({
        "candidates": len(result.trials),
        "timed": sum(t.ms is not None for t in result.trials),
        "failed": sum(t.status == "failed" for t in result.trials),
        "same_launch": sum(t.status == "same launch" for t in result.trials),
        "stopped": result.stopped,
        "start_ms": result.start.ms,
        "best": {"setting": best.setting, "changes": describe_change(defaults, best.setting), "first_ms": best.ms},
        "finalists": [{"number": t.number, "changes": describe_change(defaults, t.setting), "ms": t.ms}
                      for t in result.finalists],
    })  # fmt: skip
    try:
        log(f"A/B: best ({summary['best']['changes']}) vs defaults, {AB_ROUNDS} rounds of 100 calls")
        summary["ab"] = compare(KernelProbe(PACKAGE, seed=1000, runs=100, warmup=5), best.setting, defaults)
        log(f"A/B: best {summary['ab']['best_ms']:.4f} ms, defaults {summary['ab']['defaults_ms']:.4f} ms, "
            f"speed-up {summary['ab']['speedup']:.3f}x")  # fmt: skip
    except Exception:
        summary["ab"] = {"error": traceback.format_exc()[-2000:]}
        log(f"A/B failed: {summary['ab']['error']}")
    try:
        log("table: the winner through a `quasar kernel init` repository's tuned.json")
        summary["workspace_check"] = check_table_in_a_workspace(summary["gpu"], best.setting)
        log(f"table: {json.dumps(summary['workspace_check'])[:600]}")
    except Exception:
        summary["workspace_check"] = {"error": traceback.format_exc()[-2000:]}
        log(f"table check failed: {summary['workspace_check']['error']}")
    summary["wall_s"] = time.monotonic() - STARTED
    summary["suggested_table_entry"] = {summary["gpu"]: best.setting}
    with out.open("a") as sink:
        sink.write(json.dumps(summary) + "\n")
    log(f"done in {summary['wall_s']:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
