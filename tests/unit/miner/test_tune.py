"""The ``tune`` strategy: the declaration it reads, its search, the table it writes, and its commit.

The GPU timing is the one part replaced: ``measure`` is a plain deterministic function of the setting
(fastest at programs_per_sm = 3, segments of at least 16 chunks and three output stages; one warps
value fails as an out-of-resources kernel would). Everything else is real: the declaration comes from the kernel of a `quasar kernel init`
workspace through the probe, isolated as a bench is; which settings launch the same comes from the
kernel's own ``launch_settings``; the finalist is judged by the CPU bench and committed by the workspace.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from quasar.evaluation import sandbox as sandbox_module
from quasar.kernels.fast import launch_settings
from quasar.kernels.fast.tuning import DEFAULTS, KNOBS, check, read_table
from quasar.miner.bench import BenchRunner, Isolation
from quasar.miner.state import MinerState
from quasar.miner.strategies import Context
from quasar.miner.strategies.helper import HelperError, start_helper
from quasar.miner.strategies.probe import KernelProbe
from quasar.miner.strategies.search import (
    FAILED,
    FINALIST,
    PRUNED,
    SAME,
    START,
    DeclarationError,
    KnobSpec,
    Setting,
    complete,
    parse_declaration,
    search,
    table_with,
)
from quasar.miner.strategies.tune import PROBE_MODULE, TABLE_PATH, TuneStrategy
from quasar.miner.workspace import Workspace
from tests.failing_bwrap import put_failing_bwrap_first

#: What the search finds at the benchmark shape, where min_segment_chunks <= 32 changes no launch...
WINNER = {"programs_per_sm": 3.0, "output_num_stages": 3}
#: ...and at the CPU bench's timing shape (T=4,096, H=4: 64 chunks), which the probe times on a CPU, where
#: programs_per_sm changes none (every value asks for fewer chunks per segment than min_segment_chunks).
WINNER_ON_CPU = {"min_segment_chunks": 16, "output_num_stages": 3}


def fake_ms(setting: Setting) -> float:
    """Fastest at programs_per_sm=3, min_segment_chunks=16, output_num_stages=3; 8 map warps fail;
    8 WY warps cost a little."""
    if setting["map_num_warps"] == 8:
        raise RuntimeError("out of resources: shared memory")
    return (
        1.0
        + 0.1 * abs(math.log2(float(setting["programs_per_sm"]) / 3.0))  # type: ignore[arg-type]
        + 0.05 * abs(math.log2(float(setting["min_segment_chunks"]) / 16.0))  # type: ignore[arg-type]
        + (0.0 if setting["output_num_stages"] == 3 else 0.03)
        + (0.002 if setting["wy_num_warps"] == 8 else 0.0)
    )


def bench_launch(setting: Setting) -> str:
    """What the kernel launches at the benchmark shape (its own host logic)."""
    return json.dumps(launch_settings(1, 100_000, 8, None, torch.device("cpu"), check(setting)))


def declared_knobs() -> tuple[KnobSpec, ...]:
    return parse_declaration(KernelProbe("quasar.kernels.fast").describe()["knobs"])


def workspace(tmp_path: Path) -> Workspace:
    ws = Workspace(tmp_path / "ws", "miner")
    ws.prepare(source=None, submit_url=None)
    return ws


def runner(**options: object) -> BenchRunner:
    # A plain child process where no sandbox can be built (said in a warning): these tests are about the tuner.
    return BenchRunner(device="cpu", isolation=Isolation(allow_unsandboxed=True), **options)  # type: ignore[arg-type]


# -- the declaration --


def test_the_probe_reads_the_workspace_kernels_declaration(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    with start_helper(runner(), ws.path, PROBE_MODULE) as probe:
        info = probe.call("describe", 300, repo=probe.repo)
        launch = probe.call("launch", 60, setting={"min_segment_chunks": 2})["launch"]
    knobs = parse_declaration(info["knobs"])
    assert [k.name for k in knobs] == [k.name for k in KNOBS]
    assert {k.name: k.default for k in knobs} == DEFAULTS.as_dict()
    assert info["device"] == "cpu" and info["table"] == {}
    assert json.loads(launch)["chunks_per_segment"] == 2


def test_without_a_sandbox_the_probe_runs_only_where_benches_may(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ws = workspace(tmp_path)
    put_failing_bwrap_first(tmp_path, monkeypatch, only=["git"])  # and no unshare
    try:
        refused = pytest.raises(
            HelperError, match="no sandbox can be built .*MINER_ALLOW_UNSANDBOXED_CANDIDATES=true"
        )
        with refused, start_helper(BenchRunner(device="cpu"), ws.path, PROBE_MODULE):
            pass
        with caplog.at_level(logging.WARNING), start_helper(runner(), ws.path, PROBE_MODULE) as probe:
            assert probe.call("describe", 300, repo=probe.repo)["device"] == "cpu"
            with pytest.raises(HelperError, match="time: .*min_segment_chunks = 3 is not one of"):
                probe.call("time", 60, setting={"min_segment_chunks": 3})
    finally:
        monkeypatch.undo()
        sandbox_module.forget_probes()
    assert any("WITHOUT a sandbox" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "the kernel declares no knobs"),
        ([{"type": "int", "values": [1], "default": 1}], "knob #1: needs a name"),
        (
            [{"name": "x", "type": "str", "values": [1], "default": 1}],
            "knob 'x': type must be int or float, got 'str'",
        ),
        (
            [{"name": "x", "type": "int", "values": [1.5], "default": None}],
            "knob 'x': values must be a non-empty list of ints",
        ),
        (
            [{"name": "x", "type": "int", "values": [], "default": None}],
            "knob 'x': values must be a non-empty list",
        ),
        ([{"name": "x", "type": "int", "values": [1, 1], "default": 1}], "knob 'x': values repeat"),
        (
            [{"name": "x", "type": "int", "values": [1, 2], "default": 3}],
            "knob 'x': default 3 is not one of its values",
        ),
        ([{"name": "x", "type": "int", "values": [1], "default": 1}] * 2, "knob 'x': declared twice"),
    ],
)
def test_a_malformed_declaration_is_refused_with_one_line(data: object, message: str) -> None:
    with pytest.raises(DeclarationError) as refused:
        parse_declaration(data)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_a_setting_takes_only_declared_values() -> None:
    knobs = declared_knobs()
    assert complete(knobs, {"programs_per_sm": 3}) == {**DEFAULTS.as_dict(), "programs_per_sm": 3}
    for entry, message in (
        ({"programs_per_sm": 1.7}, "programs_per_sm = 1.7 is not one of its values"),
        ({"scan_num_warps": None}, "scan_num_warps = null"),
        ({"wy_num_warps": 4.0}, "wy_num_warps = 4.0"),
        ({"warps": 4}, "unknown knob 'warps'"),
    ):
        with pytest.raises(DeclarationError, match=message):
            complete(knobs, entry)


# -- the search --


def test_the_search_times_each_launch_once_prunes_and_picks_finalists() -> None:
    knobs = declared_knobs()
    start = complete(knobs, {})
    timed: list[Setting] = []

    def measure(setting: Setting) -> float:
        timed.append(setting)
        return fake_ms(setting)

    result = search(knobs, start, measure, launch_of=bench_launch, finalists=2, min_gain=0.01)
    assert result.trials[0].status == START and result.trials[0].setting == start and timed[0] == start
    assert result.best.setting == {**start, **WINNER} and not result.stopped
    # Every setting measured at most once; none whose launch was already timed.
    assert len({json.dumps(s, sort_keys=True) for s in timed}) == len(timed)
    assert len({bench_launch(s) for s in timed}) == len(timed)
    # At T=100k the segment length comes from programs_per_sm: min_segment_chunks <= 32 changes nothing.
    for trial in result.trials:
        if trial.setting["min_segment_chunks"] != DEFAULTS.min_segment_chunks:
            assert trial.status == SAME and trial.ms is None, trial
    failed = [t for t in result.trials if t.status == FAILED]
    assert failed and all(t.setting["map_num_warps"] == 8 and "out of resources" in t.note for t in failed)
    # The finalists: the fastest two that beat the start by 1%, fastest first; the rest is pruned.
    assert [t.status for t in result.finalists] == [FINALIST, FINALIST]
    assert result.finalists[0] is result.best
    assert result.finalists[0].ms <= result.finalists[1].ms < 0.99 * result.start.ms  # type: ignore[operator]
    pruned = [t for t in result.trials if t.status == PRUNED]
    assert pruned and min(t.ms for t in pruned) >= result.finalists[1].ms  # type: ignore[type-var]
    assert {t.status for t in result.trials} == {START, FINALIST, PRUNED, FAILED, SAME}


def test_no_finalist_without_a_gain_and_a_stop_ends_the_search() -> None:
    knobs = declared_knobs()
    start = complete(knobs, WINNER)
    result = search(knobs, start, fake_ms, launch_of=bench_launch, min_gain=0.01)
    assert result.best is result.start and result.finalists == []
    stop = threading.Event()

    def measure(setting: Setting) -> float:
        stop.set()  # the miner shuts down during the first timing
        return fake_ms(setting)

    stopped = search(knobs, complete(knobs, {}), measure, stop=stop)
    assert stopped.stopped == "stopped" and len(stopped.trials) == 1 and stopped.finalists == []


def test_the_table_written_is_one_the_kernel_reads(tmp_path: Path) -> None:
    path = tmp_path / "tuned.json"
    setting = complete(declared_knobs(), WINNER)
    path.write_text(table_with(None, "NVIDIA H200", setting))
    path.write_text(table_with(path.read_text(), "NVIDIA H100 80GB HBM3", complete(declared_knobs(), {})))
    path.write_text(table_with(path.read_text(), "NVIDIA H200", setting))  # rewritten, not duplicated
    table = read_table(path)
    assert table == {"NVIDIA H200": replace(DEFAULTS, **WINNER), "NVIDIA H100 80GB HBM3": DEFAULTS}
    with pytest.raises(DeclarationError, match="tuned.json is not valid JSON"):
        table_with("{", "NVIDIA H200", setting)


# -- the strategy --


def test_off_cuda_tune_says_it_needs_a_gpu_and_tunes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws = workspace(tmp_path)
    head = ws.head()
    ctx = Context(ws, MinerState(), lambda: None, runner(), threading.Event())
    with caplog.at_level(logging.INFO, logger="quasar.miner.tune"):
        assert TuneStrategy("cpu").improve(ctx) == []
    said = [r.getMessage() for r in caplog.records if r.name == "quasar.miner.tune"]
    assert len(said) == 1 and "tuning needs a GPU" in said[0]
    assert ws.head() == head and not ws.kernel_dirty()


@pytest.mark.slow
def test_tune_commits_the_fastest_setting_into_the_table_for_this_gpu(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws = workspace(tmp_path)
    first = ws.head()
    # On CPU the table changes nothing the bench times (CPU tensors take the PyTorch path), so the
    # candidate is kept whenever it passes: a margin of -90% asks only for 10% of HEAD's speed.
    ctx = Context(ws, MinerState(), lambda: None, runner(quick=True, timeout_seconds=600), threading.Event(),
                  min_improvement=-0.9)  # fmt: skip
    tune = TuneStrategy("cpu")
    with caplog.at_level(logging.INFO, logger="quasar.miner.tune"):
        outcomes = tune.tune(ctx, measure=fake_ms)
    assert [o.kept for o in outcomes] == [True], [o.reason for o in outcomes]
    assert ws.head() == outcomes[0].commit != first and not ws.kernel_dirty()
    message = subprocess.run(["git", "log", "-1", "--format=%s"], cwd=ws.path, capture_output=True, text=True,
                             check=True).stdout.strip()  # fmt: skip
    assert message.startswith("tune: cpu: min_segment_chunks=16, output_num_stages=3")
    committed = ws.git("show", f"HEAD:{TABLE_PATH}").stdout
    assert json.loads(committed) == {"cpu": {**DEFAULTS.as_dict(), **WINNER_ON_CPU}}
    assert read_table(ws.path / TABLE_PATH) == {
        "cpu": replace(DEFAULTS, **WINNER_ON_CPU)
    }  # as the kernel reads it
    assert ws.git("diff", "--name-only", first, "HEAD").stdout.split() == [TABLE_PATH]
    summary = "\n".join(r.getMessage() for r in caplog.records if r.name == "quasar.miner.tune")
    assert (
        "what was tried" in summary and "kept:" in summary and "committed" in summary and "pruned" in summary
    )

    # The next cycle searches again from the committed setting: nothing beats it, nothing is committed.
    assert tune.tune(ctx, measure=fake_ms) == [] and ws.head() == outcomes[0].commit
    # And that kernel is not searched a third time.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="quasar.miner.tune"):
        assert tune.tune(ctx, measure=fake_ms) == []
    assert any("searched already" in r.getMessage() for r in caplog.records)
    assert ws.head() == outcomes[0].commit
