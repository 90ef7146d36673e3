"""The bench's parts: report schema round trip, the trusted checks, the cases and their inputs, timing."""

from __future__ import annotations

import json

import pytest
import torch

from quasar.bench.cases import (
    MIXED_KINDS,
    CaseSpec,
    case_seed,
    correctness_cases,
    make_inputs,
    reference_outputs,
)
from quasar.bench.check import (
    check_result,
    poison_returned,
    rel_l2_error,
    shares_memory,
    tolerance_for,
    worst_slice_error,
)
from quasar.bench.schema import SCHEMA_VERSION, BenchReport, CaseResult, Timing
from quasar.bench.timing import MIN_INPUT_SETS, input_sets_needed, l2_cache_bytes, time_callable
from quasar.kernels import quasar_alpha
from quasar.reasons import (
    REASON_ALIASED_OUTPUT,
    REASON_BAD_RETURN,
    REASON_INCORRECT_FINAL_STATE,
    REASON_INCORRECT_OUTPUT,
    REASON_NAN_OR_INF,
    REASON_WRONG_DTYPE,
    REASON_WRONG_SHAPE,
)


def _timing(median: float) -> Timing:
    return Timing(
        shape={"B": 1, "T": 8}, dtype="float32", device="cpu", median_ms=median, p10_ms=median, p90_ms=median,
        runs=5, input_sets=3, warmup=1, baseline_ms=2 * median, speedup=2.0,
    )  # fmt: skip


def test_report_round_trips_through_json() -> None:
    report = BenchReport(
        verdict="pass", entry="fla.ops.quasar:chunk_quasar", device="cpu", device_type="cpu", seed=7,
        cases=[CaseResult("a", {"B": 1}, "float32", 2e-3, "naive_fp32", True, 1e-6, 2e-6)],
        timing=_timing(3.0), extra_timings=[_timing(5.0)], layer=_timing(9.0), environment={"torch": "x"},
    )  # fmt: skip
    data = json.loads(json.dumps(report.to_dict()))
    assert data["schema_version"] == SCHEMA_VERSION
    # The summary keys the API's result body uses sit at the top level.
    assert (data["median_ms"], data["baseline_ms"], data["speedup"]) == (3.0, 6.0, 2.0)
    assert data["max_rel_error"] == 2e-6
    data["a_field_from_the_future"] = 1
    assert BenchReport.from_dict(data) == report
    # Strict JSON: a non-finite number is written as null.
    report.cases[0].rel_error = float("inf")
    assert json.loads(report.to_json())["cases"][0]["rel_error"] is None


def test_rel_l2_error_and_tolerances() -> None:
    ref = torch.tensor([3.0, 4.0])
    assert rel_l2_error(ref, ref) == 0
    assert rel_l2_error(torch.zeros(2), ref) == pytest.approx(1.0)
    assert rel_l2_error(torch.tensor([3.0, 4.5]), ref) == pytest.approx(0.1)
    assert rel_l2_error(torch.tensor([float("nan"), 4.0]), ref) == float("inf")
    assert tolerance_for(torch.bfloat16) == tolerance_for(torch.float16) == 1e-2
    assert tolerance_for(torch.float32) == 2e-3


def _check(result, *, inputs=(), expected_final=None):
    return check_result(
        result, expected_o=torch.ones(1, 4, 2, 3), expected_final=expected_final, out_dtype=torch.float32,
        device=torch.device("cpu"), tolerance=1e-2, inputs=inputs,
    )  # fmt: skip


def test_check_result_reasons() -> None:
    good = torch.ones(1, 4, 2, 3)
    state = torch.ones(1, 2, 5, 3)
    assert _check((good, None)).passed
    assert _check(good).reason == REASON_BAD_RETURN
    assert _check((good.transpose(1, 2), None)).reason == REASON_WRONG_SHAPE
    assert _check((good.half(), None)).reason == REASON_WRONG_DTYPE
    assert _check((good, None), inputs=[good]).reason == REASON_ALIASED_OUTPUT
    nan = good.clone()
    nan[0, 3, 1, 2] = float("inf")
    assert _check((nan, None)).reason == REASON_NAN_OR_INF
    assert _check((good * 1.1, None)).reason == REASON_INCORRECT_OUTPUT
    assert _check((good, state * 2), expected_final=state).reason == REASON_INCORRECT_FINAL_STATE
    assert _check((good, state.double()), expected_final=state).reason == REASON_WRONG_DTYPE
    assert _check((good, None), expected_final=state).reason == REASON_BAD_RETURN


def test_worst_slice_names_the_sequence_and_head() -> None:
    expected = torch.ones(1, 10, 3, 4)
    actual = expected.clone()
    actual[0, 6:8, 2] *= 1.5  # tokens 6..7 of head 2: the third packed sequence below
    bounds = [(0, 2), (2, 6), (6, 8), (8, 10)]
    error, where = worst_slice_error(actual, expected, bounds)
    assert where == (2, 2) and error == pytest.approx(0.5)
    # Unpacked, a sequence is a batch row; states [N, H, K, V] are sliced the same way.
    error, where = worst_slice_error(actual, expected)
    assert where == (0, 2) and error == pytest.approx(0.5 * (2 / 10) ** 0.5)


def test_a_fault_on_one_sequence_and_head_fails_though_small_overall() -> None:
    spec = next(c for c in correctness_cases("cpu") if c.seqlens and len(c.seqlens) > 100)
    inputs = make_inputs(spec, case_seed(3, 0), "cpu")
    expected_o, expected_final = reference_outputs(spec, inputs)
    o, final = expected_o.clone(), expected_final.clone()
    start, end = spec.bounds[42]
    o[:, start:end, 1] *= 1.03
    tol = tolerance_for(spec.dtype)
    kwargs = dict(expected_o=expected_o, expected_final=expected_final, out_dtype=torch.float32,
                  device=o.device, tolerance=tol)  # fmt: skip
    outcome = check_result((o, final), bounds=spec.bounds, **kwargs)
    assert outcome.rel_error < tol and outcome.reason == REASON_INCORRECT_OUTPUT
    assert "sequence 42, head 1" in outcome.detail
    assert outcome.worst_slice_rel_error == pytest.approx(0.03, rel=1e-3)
    # The same for one state of the final states.
    final[7, 0] *= 1.03
    outcome = check_result((expected_o, final), bounds=spec.bounds, **kwargs)
    assert outcome.reason == REASON_INCORRECT_FINAL_STATE and "sequence 7, head 0" in outcome.detail


def test_long_memory_keys_carry_the_initial_state_to_the_last_token() -> None:
    # With random keys of ordinary norm the initial state is forgotten within a few hundred tokens;
    # with the long-memory kinds it still shapes the last tokens' outputs.
    remembered = {}
    for keys in ("random", "low_rank", "tiny"):
        spec = CaseSpec(f"memory_{keys}", 1, 6000, 2, 16, 16, torch.float32, keys=keys, initial_state=True)
        inputs = make_inputs(spec, 11, "cpu")
        with_h0, _ = reference_outputs(spec, inputs)
        inputs.initial_state = torch.zeros_like(inputs.initial_state)
        without_h0, _ = reference_outputs(spec, inputs)
        remembered[keys] = rel_l2_error(with_h0[:, -1000:], without_h0[:, -1000:])
    assert remembered["random"] < 1e-6
    assert remembered["low_rank"] > 0.1 and remembered["tiny"] > 0.1


def test_low_rank_keys_span_a_small_subspace_per_head() -> None:
    spec = CaseSpec("low_rank", 1, 512, 3, 32, 32, torch.float32, keys="low_rank")
    k = make_inputs(spec, 5, "cpu").k[0]  # [T, H, K]
    for head in range(3):
        singular = torch.linalg.svdvals(k[:, head].double())
        assert int((singular > 1e-6 * singular[0]).sum()) == 32 // 4


def test_timed_runs_draw_long_memory_keys_from_their_seed() -> None:
    from quasar.bench.suite import timing_spec

    spec = timing_spec("cpu", quick=True)
    assert spec.keys == "mixed"
    norms = {round(float(make_inputs(spec, seed, "cpu").k.norm(dim=-1).max()), 1) for seed in range(12)}
    # Tiny keys have norms at most 0.1; low-rank ones reach past 1: both kinds were drawn.
    assert min(norms) <= 0.1 and max(norms) > 1.0
    assert set(MIXED_KINDS) == {"low_rank", "tiny"}
    with pytest.raises(ValueError, match="keys must be one of"):
        CaseSpec("bad", 1, 8, 2, 4, 4, torch.float32, keys="sparse")


def test_shares_memory_and_poison() -> None:
    base = torch.zeros(10)
    assert shares_memory(base[2:5], base) and not shares_memory(base.clone(), base)
    out = torch.ones(3)
    poison_returned(out, None)
    assert bool(out.isnan().all())


def test_cpu_cases_cover_the_contract() -> None:
    cases = correctness_cases("cpu")
    assert any(c.seq_len > 2048 for c in cases), "a kernel right only at small T must be caught"
    assert any(c.seq_len % 2 == 1 for c in cases), "T not a multiple of any chunk size"
    assert any(c.batch > 1 for c in cases)
    assert any(c.initial_state for c in cases)
    assert any(c.output_final_state and not c.initial_state for c in cases)
    packed = [c for c in cases if c.seqlens]
    assert packed and any(len(set(c.seqlens)) > 1 for c in packed)
    assert any(c.seqlens and c.initial_state for c in cases)
    assert all(c.heads > 1 for c in cases), "H > 1 catches a [B, H, T, K] reading of [B, T, H, K]"
    assert {c.dtype for c in cases} == {torch.float32, torch.float16}
    # On CPU the judge is the definition itself: it shares no code with the chunked baseline.
    assert all(c.reference_name == "naive_fp32" for c in cases)
    # Long memory well past 4,096 tokens, so any restart window up to 4,096 tokens shows.
    long_memory = [c for c in cases if c.keys in ("low_rank", "tiny")]
    assert any(c.seq_len >= 3 * 4096 and c.initial_state and c.output_final_state for c in long_memory)
    assert {"low_rank", "tiny", "overwrite", "large_values"} <= {c.keys for c in cases}
    assert any(c.seqlens and len(c.seqlens) >= 100 for c in cases)


def test_gpu_cases_cover_the_benchmark_shape() -> None:
    cases = correctness_cases("cuda", quick=True)
    bench = cases[0]
    assert (bench.batch, bench.seq_len, bench.heads, bench.key_dim, bench.value_dim) == (
        1,
        100_000,
        8,
        64,
        64,
    )
    assert bench.reference_name == "chunked_fp32"
    assert {c.dtype for c in cases} == {torch.bfloat16, torch.float16}
    assert len(correctness_cases("cuda")) > len(cases)


def test_inputs_are_fresh_per_seed_and_never_degenerate() -> None:
    spec = next(c for c in correctness_cases("cpu") if c.seqlens and c.initial_state)
    a = make_inputs(spec, case_seed(1, 0), "cpu")
    b = make_inputs(spec, case_seed(1, 0), "cpu")
    c = make_inputs(spec, case_seed(2, 0), "cpu")
    assert torch.equal(a.q, b.q) and not torch.equal(a.q, c.q)
    for x in (a.q, a.k, a.v, a.initial_state):
        assert float(x.float().abs().mean()) > 0.01
    assert bool((a.beta > 0).all())
    assert a.cu_seqlens.tolist()[-1] == spec.seq_len and a.initial_state.shape[0] == len(spec.seqlens)
    alpha = quasar_alpha(a.k, a.beta)
    assert float(alpha.std() / alpha.mean()) > 0.2, "alpha must vary from token to token"
    o, final = reference_outputs(spec, a)
    assert o.dtype == torch.float32 and final is not None and bool(o.isfinite().all())


def test_time_callable_on_cpu() -> None:
    calls = []
    sets = [(torch.full((4,), float(i)),) for i in range(MIN_INPUT_SETS)]
    timing = time_callable(
        lambda x: calls.append(float(x[0])) or x * 2, sets, device=torch.device("cpu"), runs=6, warmup=1,
        shape={"T": 4}, dtype="float32", tokens=4,
    )  # fmt: skip
    assert timing.runs == 6 and timing.input_sets == 3 and timing.method == "perf_counter"
    assert timing.p10_ms <= timing.median_ms <= timing.p90_ms
    assert timing.tokens_per_s and timing.tokens_per_s > 0
    assert calls[1:] == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0], "runs rotate through the input sets"


def test_input_sets_exceed_l2() -> None:
    cpu = torch.device("cpu")
    assert input_sets_needed(10**9, cpu) == MIN_INPUT_SETS
    small = 1024 * 1024
    assert input_sets_needed(small, cpu) * small > l2_cache_bytes(cpu)
