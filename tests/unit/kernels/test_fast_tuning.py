"""The fast kernels' declared knobs and tuned-settings table (``quasar.kernels.fast.tuning``).

The declaration and the table are checked in this process: bad values are refused with one line that
names the file, the GPU entry and the knob. That a table entry changes what the kernel launches, and
that every launch the knobs can make stays exact, is checked under Triton's interpreter in a child
process (this file run as a script, as ``test_fast_interpret`` does), on a repository made by
``quasar kernel init``, so the table is read the way validators read a miner's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch

from quasar.kernels.fast import launch_settings, tuning
from quasar.kernels.fast.segments import choose_segment_chunks
from quasar.kernels.fast.tuning import DEFAULTS, KNOBS, Settings, TuningError, check, read_table
from quasar.kernels.template import init_kernel_repo

HERE = Path(__file__).resolve()
REPO_ROOT = HERE.parents[3]
CPU = torch.device("cpu")
#: The benchmark shape: B=1, T=100,000 (1,563 chunks of 64), H=8; an H100 and an H200 have 132 SMs.
BENCH_CHUNKS, BENCH_HEADS, SMS = 1563, 8, 132
# The interpreter's arithmetic is plain fp32 (no TF32): held as tightly as test_fast_interpret holds it.
TOLERANCE = 1e-4


def test_every_knob_is_a_setting_with_an_allowed_default() -> None:
    assert [k.name for k in KNOBS] == [f.name for f in fields(Settings)]
    for knob in KNOBS:
        assert knob.type in (int, float) and knob.values and len(set(knob.values)) == len(knob.values)
        assert knob.default is None or knob.default in knob.values, knob.name
    assert check({}) == DEFAULTS
    # The defaults are the launches the kernels always had: 1.5 programs per SM, segments of 8 chunks
    # at least, autotuned warps and stages, the scan at 4 warps and 2 stages.
    assert (DEFAULTS.programs_per_sm, DEFAULTS.min_segment_chunks) == (1.5, 8)
    assert (DEFAULTS.scan_num_warps, DEFAULTS.scan_num_stages) == (
        4,
        2,
    ) and DEFAULTS.output_num_stages is None


def test_a_partial_entry_keeps_the_other_defaults() -> None:
    settings = check({"programs_per_sm": 2, "output_num_stages": 3})
    assert settings == replace(DEFAULTS, programs_per_sm=2.0, output_num_stages=3)
    assert isinstance(settings.programs_per_sm, float)
    assert check({"wy_num_warps": None}).wy_num_warps is None  # autotuned, as by default


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"programs_per_sm": 1.7}, "programs_per_sm = 1.7 is not one of 0.5, 0.75"),
        ({"wy_num_warps": 4.0}, "wy_num_warps = 4.0 is not one of 4, 8, null (autotuned)"),
        ({"wy_num_warps": 16}, "wy_num_warps = 16 is not one of"),
        ({"scan_num_warps": None}, "scan_num_warps = null is not one of 2, 4, 8"),
        ({"output_num_stages": True}, "output_num_stages = true is not one of"),
        ({"map_num_stages": "3"}, 'map_num_stages = "3" is not one of'),
        ({"num_warps": 4}, "unknown knob 'num_warps'; the knobs are programs_per_sm, min_segment_chunks"),
        ([4, 8], "must be an object of knob: value, got list"),
    ],
)
def test_bad_settings_are_refused_with_one_line(entry: object, message: str) -> None:
    with pytest.raises(TuningError) as refused:
        check(entry, "tuned.json: 'NVIDIA H200'")
    text = str(refused.value)
    assert text.startswith("tuned.json: 'NVIDIA H200': ") and message in text and "\n" not in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "tuned.json: not valid JSON (Expecting property name"),
        ('["NVIDIA H200"]', "tuned.json: must be an object of GPU name: settings, got list"),
        ('{"NVIDIA H200": 3}', "tuned.json: 'NVIDIA H200': must be an object of knob: value, got int"),
        (
            '{"NVIDIA H200": {"min_segment_chunks": 3}}',
            "tuned.json: 'NVIDIA H200': min_segment_chunks = 3 is not",
        ),
    ],
)
def test_a_malformed_table_is_refused_naming_the_entry(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tuned.json"
    path.write_text(content)
    with pytest.raises(TuningError) as refused:
        read_table(path)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_the_shipped_table_reads_and_a_missing_one_is_empty(tmp_path: Path) -> None:
    assert read_table(Path(tuning.__file__).with_name(tuning.TABLE_FILE)) == tuning.TABLE
    assert read_table(tmp_path / "tuned.json") == {}
    path = tmp_path / "tuned.json"
    path.write_text('{"NVIDIA H100 80GB HBM3": {"programs_per_sm": 3}}')
    assert read_table(path) == {"NVIDIA H100 80GB HBM3": replace(DEFAULTS, programs_per_sm=3.0)}


def test_programs_per_sm_sets_the_segment_length_at_the_benchmark_shape() -> None:
    def chunks(**changes: object) -> int:
        return choose_segment_chunks(BENCH_CHUNKS, BENCH_HEADS, SMS, replace(DEFAULTS, **changes))

    assert chunks() == 64  # docs/benchmarks.md: the automatic value at T=100k, H=8
    assert [chunks(programs_per_sm=p) for p in (0.5, 1.0, 3.0, 4.0)] == [190, 95, 32, 24]
    # There, min_segment_chunks binds only above the automatic length...
    assert {chunks(min_segment_chunks=m) for m in (1, 2, 4, 8, 16, 32)} == {64}
    assert chunks(programs_per_sm=4.0, min_segment_chunks=32) == 32
    # ...so those settings launch the same kernels the same way, and a tuner times them once.
    launches = {
        json.dumps(launch_settings(1, 100_000, 8, None, CPU, replace(DEFAULTS, min_segment_chunks=m)))
        for m in (1, 2, 4, 8, 16, 32)
    }
    assert len(launches) == 1
    pinned = launch_settings(
        1, 100_000, 8, None, CPU, replace(DEFAULTS, output_num_warps=8, output_num_stages=3)
    )
    assert pinned["output"] == [(8,), (3,)] and pinned["chunks_per_segment"] == 64
    assert launch_settings(1, 100_000, 8, None, CPU, DEFAULTS)["output"] == [(4, 8), (1, 2, 3)]  # autotuned


def test_the_template_carries_the_declaration_and_the_table(tmp_path: Path) -> None:
    init_kernel_repo(tmp_path / "kernel")
    fast = tmp_path / "kernel" / "fla" / "ops" / "quasar" / "fast"
    assert (fast / "tuning.py").read_text() == Path(tuning.__file__).read_text()
    assert json.loads((fast / "tuned.json").read_text()) == json.loads(
        Path(tuning.__file__).with_name("tuned.json").read_text()
    )
    tracked = subprocess.run(
        ["git", "ls-files", "fla/ops/quasar/fast"],
        cwd=tmp_path / "kernel",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {"fla/ops/quasar/fast/tuning.py", "fla/ops/quasar/fast/tuned.json"} <= set(tracked)


# -- under the interpreter, in a child process --

# B, T, H, K, V: five chunks per sequence, so segments of 1, 2 and 4 chunks split it and 8 does not.
SHAPE = (1, 300, 1, 16, 32)
#: What the table of the child's repository holds for the interpreter ("cpu"): two-chunk segments and
#: a pinned output launch, where the defaults give one segment and an autotuned one.
TABLE_ENTRY = {"min_segment_chunks": 2, "output_num_warps": 8, "output_num_stages": 1}


def _inputs() -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    B, T, H, K, V = SHAPE
    return (torch.randn(B, T, H, K), torch.randn(B, T, H, K), torch.randn(B, T, H, V), torch.rand(H) + 0.5,
            torch.randn(B, H, K, V))  # fmt: skip


def _rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.double(), ref.double()
    return float((x - ref).norm() / ref.norm()) if bool(x.isfinite().all()) else float("inf")


def _child_table() -> dict[str, object]:
    """In a `quasar kernel init` repository whose table has TABLE_ENTRY for "cpu"."""
    from fla.ops.quasar.fast import chunk_quasar, launch_settings, quasar_fwd, tuning
    from fla.ops.quasar.reference import naive_quasar

    q, k, v, beta, h0 = _inputs()
    o_table, ht_table = chunk_quasar(q, k, v, beta, h0, True)  # the public entry: reads the table
    o_two, _ = quasar_fwd(q, k, v, beta, h0, True, None, None, segment_chunks=2, settings=tuning.DEFAULTS)
    o_default, _ = quasar_fwd(q, k, v, beta, h0, True, None, None, settings=tuning.DEFAULTS)
    ref_o, ref_ht = naive_quasar(q.double(), k.double(), v.double(), beta.double(), h0.double(), True)
    B, T, H, _, _ = SHAPE
    return {
        "settings": tuning.settings_for(torch.device("cpu")).as_dict(),
        "launch": launch_settings(
            B, T, H, None, torch.device("cpu"), tuning.settings_for(torch.device("cpu"))
        ),
        "same_as_two_chunk_segments": torch.equal(o_table, o_two),
        "same_as_defaults": torch.equal(o_table, o_default),
        "error_o": _rel(o_table, ref_o),
        "error_final_state": _rel(ht_table, ref_ht),
        "error_defaults": _rel(o_default, ref_o),
    }


def _variants(knobs: tuple[tuning.Knob, ...] = KNOBS) -> dict[str, dict[str, object]]:
    """Every declared value of every knob (and None where it is autotuned), the others at their
    defaults but for one-chunk segments, so the map and scan kernels run too. At a shape this small
    programs_per_sm leaves the launch as it is (the host logic above covers it), and the interpreter
    runs any warps and stages the same way: what these check is that every value launches and stays exact."""
    variants: dict[str, dict[str, object]] = {}
    for knob in knobs:
        for value in ((None,) if knob.default is None else ()) + knob.values:
            variants[f"{knob.name}={value}"] = {"min_segment_chunks": 1, knob.name: value}
    return variants


def _child_values() -> dict[str, float]:
    from fla.ops.quasar.fast import quasar_fwd, tuning
    from fla.ops.quasar.reference import naive_quasar

    q, k, v, beta, h0 = _inputs()
    ref_o, ref_ht = naive_quasar(q.double(), k.double(), v.double(), beta.double(), h0.double(), True)
    errors = {}
    for name, entry in _variants(tuning.KNOBS).items():
        o, ht = quasar_fwd(q, k, v, beta, h0, True, None, None, settings=tuning.check(entry))
        errors[name] = max(_rel(o, ref_o), _rel(ht, ref_ht))
    return errors


def _run_child(tmp_path: Path, mode: str, table: dict[str, object]) -> dict:
    pytest.importorskip("triton")
    repo = tmp_path / "kernel"
    init_kernel_repo(repo)
    (repo / "fla" / "ops" / "quasar" / "fast" / "tuned.json").write_text(json.dumps(table))
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": f"{repo}{os.pathsep}{REPO_ROOT}"}
    proc = subprocess.run(
        [sys.executable, str(HERE), mode], env=env, capture_output=True, text=True, timeout=300, cwd=repo
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_table_entry_changes_what_the_kernel_launches(tmp_path: Path) -> None:
    report = _run_child(tmp_path, "table", {"cpu": TABLE_ENTRY, "NVIDIA H200": {"programs_per_sm": 3}})
    assert {name: report["settings"][name] for name in TABLE_ENTRY} == TABLE_ENTRY
    assert report["launch"]["chunks_per_segment"] == 2 and report["launch"]["output"] == [[8], [1]]
    # Bit for bit what two-chunk segments compute, and not what the defaults (one segment) compute:
    # the kernel launched with the table's setting.
    assert report["same_as_two_chunk_segments"] and not report["same_as_defaults"]
    assert report["error_o"] < TOLERANCE and report["error_final_state"] < TOLERANCE
    assert report["error_defaults"] < TOLERANCE


def test_every_launch_the_knobs_make_stays_exact(tmp_path: Path) -> None:
    errors = _run_child(tmp_path, "values", {})
    assert set(errors) == set(_variants())
    assert {name: e for name, e in errors.items() if not e < TOLERANCE} == {}


if __name__ == "__main__":
    from test_fast_interpret import _shim_numpy_index  # the interpreter's NumPy >= 2.4 workaround

    _shim_numpy_index()
    print(json.dumps(_child_table() if sys.argv[1] == "table" else _child_values()))
