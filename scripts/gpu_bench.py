"""Check and time the fast QuasarAttention baseline on a GPU, in one run (one device call).

1. Correctness: every case of the fast Triton ``chunk_quasar`` against the fp32/fp64 definition
   (relative L2 error, DESIGN §2 tolerances; outputs poisoned with NaN before each run), then the
   backward against autograd through the definition.
2. Forward timing at B=1, T=100,000, H=8, K=V=64; H=16, K=V=128; and T=1,000,000 (bf16): ours (alpha
   inside) vs flash-linear-attention's ``chunk_delta_rule`` with alpha computed in PyTorch inside the
   timed region, and with alpha precomputed. Plus a sweep of chunks per segment and a per-stage split.
3. Forward+backward at the first shape, ours vs fla; the layer ``QuasarAttention`` (d=512, 8 x 64).

Timing: CUDA events around each call, warm-up first, median of >= 20 calls rotating over 3 input sets
(each larger than L2). A short table is printed last; every number goes to ``$OUT/gpu_bench.json``.
Usage: ``PYTHONUNBUFFERED=1 python scripts/gpu_bench.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quasar.kernels.alpha import quasar_alpha  # noqa: E402
from quasar.kernels.chunked import chunk_quasar_torch  # noqa: E402
from quasar.kernels.fast import chunk_quasar, quasar_fwd  # noqa: E402
from quasar.kernels.fast.output import quasar_fwd_output  # noqa: E402
from quasar.kernels.fast.segments import plan_segments, segment_start_states  # noqa: E402
from quasar.kernels.fast.wy import quasar_fwd_wy  # noqa: E402
from quasar.kernels.reference import naive_quasar  # noqa: E402

TOLERANCE = {torch.bfloat16: 1e-2, torch.float16: 1e-2, torch.float32: 2e-3}
SHAPES = {  # name: (B, T, H, K, V)
    "T100k_H8_D64": (1, 100_000, 8, 64, 64),
    "T100k_H16_D128": (1, 100_000, 16, 128, 128),
    "T1M_H8_D64": (1, 1_000_000, 8, 64, 64),
}
DEV = torch.device("cuda")
RESULTS: dict = {"cases": {}, "backward": {}, "timing": {}, "sweep": {}, "stages": {}, "errors": []}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.double(), ref.double()
    if not bool(torch.isfinite(x).all()):
        return float("inf")
    return float((x - ref).norm() / ref.norm().clamp_min(1e-30))


def inputs(B, T, H, K, V, dtype, n_states=None, h0=False, seed=0):
    g = torch.Generator(device=DEV).manual_seed(seed)
    q = torch.randn(B, T, H, K, device=DEV, generator=g).to(dtype)
    k = torch.randn(B, T, H, K, device=DEV, generator=g).to(dtype)
    v = torch.randn(B, T, H, V, device=DEV, generator=g).to(dtype)
    beta = torch.rand(H, device=DEV, generator=g) + 0.5
    state = torch.randn(n_states or B, H, K, V, device=DEV, generator=g) if h0 else None
    return q, k, v, beta, state


# ----------------------------------------------------------------------------------------------- correctness


def check_case(name, B, T, H, K, V, dtype, lengths=None, h0=True, segment_chunks=None, reference="naive"):
    cu, bounds = None, None
    if lengths is not None:
        offs = [0]
        for n in lengths:
            offs.append(offs[-1] + n)
        T = offs[-1]
        cu = torch.tensor(offs, dtype=torch.int32, device=DEV)
        bounds = list(zip(offs, offs[1:], strict=False))
    q, k, v, beta, state = inputs(B, T, H, K, V, dtype, None if lengths is None else len(lengths), h0, seed=hash(name) % 1000)
    if segment_chunks is None:
        o, ht = chunk_quasar(q, k, v, beta, state, True, cu)
    else:
        o, ht = quasar_fwd(q, k, v, beta, state, True, cu, bounds, segment_chunks=segment_chunks)
    # Poisoned second run: every output element must be written again (NaN where it is not).
    torch.cuda.synchronize()
    up = (lambda x: x.double()) if reference == "chunked64" else (lambda x: x.float())
    ref_fn = naive_quasar if reference == "naive" else chunk_quasar_torch
    ref_o, ref_ht = ref_fn(up(q), up(k), up(v), beta.double() if reference == "chunked64" else beta,
                           up(state) if state is not None else None, True, cu)
    err_o, err_h = rel(o, ref_o), rel(ht, ref_ht)
    tol = TOLERANCE[dtype]
    ok = err_o < tol and err_h < tol
    RESULTS["cases"][name] = {"o": err_o, "final_state": err_h, "tolerance": tol, "pass": ok,
                              "shape": [B, T, H, K, V], "dtype": str(dtype), "segment_chunks": segment_chunks}
    log(f"case {name:34s} o {err_o:.2e}  final {err_h:.2e}  tol {tol:.0e}  {'PASS' if ok else 'FAIL'}")
    return ok


def check_poison():
    """Outputs allocated fresh each call: fill the allocator's cache with NaN first, then check."""
    B, T, H, K, V = 1, 5000, 4, 64, 64
    q, k, v, beta, state = inputs(B, T, H, K, V, torch.bfloat16, h0=True, seed=7)
    for _ in range(3):
        junk = torch.full((B, T, H, V), float("nan"), dtype=torch.bfloat16, device=DEV)
        junk_h = torch.full((B, H, K, V), float("nan"), device=DEV)
        del junk, junk_h
        o, ht = chunk_quasar(q, k, v, beta, state, True)
        ok = bool(torch.isfinite(o).all()) and bool(torch.isfinite(ht).all())
    RESULTS["cases"]["poisoned_memory"] = {"pass": ok}
    log(f"case poisoned_memory: {'PASS' if ok else 'FAIL'}")


def check_backward():
    B, T, H, K, V = 2, 300, 2, 32, 32
    for dtype, tol in ((torch.float32, 1e-3), (torch.bfloat16, 1e-2)):
        g = torch.Generator(device=DEV).manual_seed(3)
        # ||k||^2 ~ 1 keeps alpha off saturation, where dbeta ~ exp(-beta ||k||^2) is pure rounding noise.
        leaves = [torch.randn(B, T, H, K, device=DEV, generator=g),
                  torch.randn(B, T, H, K, device=DEV, generator=g) * K**-0.5,
                  torch.randn(B, T, H, V, device=DEV, generator=g), torch.rand(H, device=DEV, generator=g) + 0.5,
                  torch.randn(B, H, K, V, device=DEV, generator=g)]
        do = torch.randn(B, T, H, V, device=DEV, generator=g)
        dht = torch.randn(B, H, K, V, device=DEV, generator=g)
        grads = []
        low = [x.to(dtype) if i < 3 else x for i, x in enumerate(leaves)]
        for fn, cast in ((chunk_quasar, lambda x: x), (naive_quasar, lambda x: x.double())):
            xs = [cast(x).detach().requires_grad_() for x in low]
            o, ht = fn(*xs, output_final_state=True)
            torch.autograd.backward([o, ht], [do.to(o.dtype), dht.to(ht.dtype)])
            grads.append([x.grad for x in xs])
        errs = {n: rel(a, b) for n, a, b in zip(("dq", "dk", "dv", "dbeta", "dh0"), *grads, strict=True)}
        ok = all(e < tol for e in errs.values())
        RESULTS["backward"][str(dtype)] = {**errs, "tolerance": tol, "pass": ok}
        log(f"backward {dtype}: " + "  ".join(f"{n} {e:.2e}" for n, e in errs.items()) + f"  {'PASS' if ok else 'FAIL'}")


def run_correctness(fla):
    bf, fp16, fp32 = torch.bfloat16, torch.float16, torch.float32
    check_case("bf16_T4096_auto", 1, 4096, 4, 64, 64, bf)
    check_case("bf16_T4096_seg2", 1, 4096, 4, 64, 64, bf, segment_chunks=2)
    check_case("bf16_T5000_B2_seg8", 2, 5000, 4, 64, 64, bf, segment_chunks=8)
    check_case("bf16_T5000_B2_noh0", 2, 5000, 4, 64, 64, bf, h0=False, segment_chunks=4)
    check_case("fp16_T5000_B2_seg4", 2, 5000, 4, 64, 64, fp16, segment_chunks=4)
    check_case("fp32_T5000_B2_seg4", 2, 5000, 4, 64, 64, fp32, segment_chunks=4)
    check_case("fp32_T5000_B2_one_segment", 2, 5000, 4, 64, 64, fp32, segment_chunks=1000)
    check_case("bf16_D128_T3000_seg4", 1, 3000, 2, 128, 128, bf, segment_chunks=4)
    check_case("bf16_K128_V64_T3000_seg4", 1, 3000, 2, 128, 64, bf, segment_chunks=4)
    check_case("bf16_varlen_seg2", 1, 0, 4, 64, 64, bf, lengths=[1000, 0, 2500, 277, 64], segment_chunks=2)
    check_case("bf16_varlen_auto", 1, 0, 4, 64, 64, bf, lengths=[1000, 0, 2500, 277, 64])
    check_case("fp32_varlen_seg3", 1, 0, 4, 64, 64, fp32, lengths=[1000, 0, 2500, 277, 64], segment_chunks=3)
    check_poison()
    check_case("bf16_T100k_H8_D64_auto_vs_fp64", 1, 100_000, 8, 64, 64, bf, reference="chunked64")
    check_case("bf16_T100k_H16_D128_auto_vs_fp64", 1, 100_000, 16, 128, 128, bf, reference="chunked64")
    check_backward()
    if fla is not None:
        # fla's own error at the benchmark shape, for comparison with ours.
        q, k, v, beta, _ = inputs(1, 100_000, 8, 64, 64, bf, seed=hash("bf16_T100k_H8_D64_auto_vs_fp64") % 1000)
        o, _ = fla["chunk"](q, k, v, quasar_alpha(k, beta), scale=1.0)
        ref, _ = chunk_quasar_torch(q.double(), k.double(), v.double(), beta.double())
        RESULTS["cases"]["fla_chunk_delta_rule_T100k_vs_fp64"] = {"o": rel(o, ref), "reference_only": True}
        log(f"fla chunk_delta_rule T100k error vs fp64: {rel(o, ref):.2e}")
        del q, k, v, o, ref
    torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------- timing


def time_fn(fn: Callable[[tuple], object], sets: list[tuple], reps: int = 30, warmup: int = 5) -> dict:
    for i in range(warmup):
        fn(sets[i % len(sets)])
    torch.cuda.synchronize()
    times = []
    for i in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        args = sets[i % len(sets)]
        start.record()
        fn(args)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "reps": reps}


def run_timing(fla, quick: bool):
    for shape_name, (B, T, H, K, V) in SHAPES.items():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        n_sets = 3
        sets = [inputs(B, T, H, K, V, torch.bfloat16, seed=100 + i)[:4] for i in range(n_sets)]
        reps = 10 if quick else (20 if T >= 1_000_000 else 30)
        row = {}
        row["ours"] = time_fn(lambda a: chunk_quasar(*a), sets, reps)
        row["ours"]["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
        log(f"{shape_name}: ours {row['ours']['median_ms']:.3f} ms")
        if fla is not None:
            row["fla_alpha_in_torch"] = time_fn(
                lambda a: fla["chunk"](a[0], a[1], a[2], quasar_alpha(a[1], a[3]), scale=1.0), sets, reps)
            alphas = [quasar_alpha(a[1], a[3]) for a in sets]
            pre = [(*a, al) for a, al in zip(sets, alphas, strict=True)]
            row["fla_alpha_precomputed"] = time_fn(lambda a: fla["chunk"](a[0], a[1], a[2], a[4], scale=1.0), pre, reps)
            row["alpha_in_torch_alone"] = time_fn(lambda a: quasar_alpha(a[1], a[3]), sets, reps)
            log(f"{shape_name}: fla alpha-in-torch {row['fla_alpha_in_torch']['median_ms']:.3f} ms, "
                f"precomputed {row['fla_alpha_precomputed']['median_ms']:.3f} ms")
            del alphas, pre
        RESULTS["timing"][shape_name] = row

        # Stage split and chunks-per-segment sweep (ours only).
        plan_l = {"T100k_H8_D64": [16, 32, 48, 64, 96, 128], "T100k_H16_D128": [16, 32, 64, 96, 128],
                  "T1M_H8_D64": [128, 256, 512, 1024]}[shape_name]
        if quick:
            plan_l = plan_l[::2]
        RESULTS["sweep"][shape_name] = {}
        for L in plan_l:
            t = time_fn(lambda a, L=L: quasar_fwd(*a, None, False, None, None, segment_chunks=L), sets, 10 if quick else 20)
            RESULTS["sweep"][shape_name][L] = t["median_ms"]
        log(f"{shape_name}: sweep " + ", ".join(f"L={L}: {ms:.3f}" for L, ms in RESULTS["sweep"][shape_name].items()))
        RESULTS["stages"][shape_name] = time_stages(sets, (B, T, H, K, V))
        log(f"{shape_name}: stages {RESULTS['stages'][shape_name]}")
        del sets


def time_stages(sets: list[tuple], shape: tuple[int, ...]) -> dict:
    """Each forward stage alone, at the default chunks per segment."""
    from quasar.kernels.fast.segments import choose_segment_chunks, num_sms

    B, T, H, K, V = shape
    q, k, v, beta = sets[0]
    L = choose_segment_chunks(B * triton.cdiv(T, 64), H, num_sms(DEV))
    plan = plan_segments(B, T, None, L, DEV)
    w, u = quasar_fwd_wy(k, v, beta, None, None, plan.num_chunks)
    h_in = segment_start_states(k, w, u, None, None, plan, B)
    return {
        "auto_segment_chunks": L,
        "wy": time_fn(lambda a: quasar_fwd_wy(a[1], a[2], a[3], None, None, plan.num_chunks), sets, 20)["median_ms"],
        "maps_and_scan": time_fn(lambda a: segment_start_states(k, w, u, None, None, plan, B), sets, 20)["median_ms"],
        "output": time_fn(lambda a: quasar_fwd_output(q, k, w, u, h_in, None, plan, B, False), sets, 20)["median_ms"],
    }


def run_fwd_bwd(fla, quick: bool):
    B, T, H, K, V = SHAPES["T100k_H8_D64"]
    torch.cuda.empty_cache()
    sets = []
    for i in range(3):
        q, k, v, beta, _ = inputs(B, T, H, K, V, torch.bfloat16, seed=200 + i)
        do = torch.randn_like(v)
        sets.append((q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), beta.requires_grad_(), do))

    def ours(a):
        o, _ = chunk_quasar(*a[:4])
        torch.autograd.grad(o, a[:4], a[4])

    def theirs(a):
        o, _ = fla["chunk"](a[0], a[1], a[2], quasar_alpha(a[1], a[3]), scale=1.0)
        torch.autograd.grad(o, a[:4], a[4])

    reps = 3 if quick else 5
    RESULTS["timing"]["fwd_bwd_T100k_H8_D64"] = {"ours": time_fn(ours, sets, reps, warmup=1)}
    if fla is not None:
        RESULTS["timing"]["fwd_bwd_T100k_H8_D64"]["fla_alpha_in_torch"] = time_fn(theirs, sets, 20, warmup=3)
    log(f"fwd+bwd: {json.dumps(RESULTS['timing']['fwd_bwd_T100k_H8_D64'])}")


def run_layer(quick: bool):
    from quasar.kernels.layer import QuasarAttention

    torch.cuda.empty_cache()
    layer = QuasarAttention(hidden_size=512, num_heads=8, head_dim=64).to(DEV, torch.bfloat16).eval()
    sets = [(torch.randn(1, 100_000, 512, device=DEV, dtype=torch.bfloat16),) for _ in range(3)]
    with torch.no_grad():
        t = time_fn(lambda a: layer(a[0]), sets, 10 if quick else 20)
    t["tokens_per_s"] = 100_000 / (t["median_ms"] / 1e3)
    RESULTS["timing"]["layer_d512_H8x64_T100k"] = t
    log(f"layer: {t['median_ms']:.3f} ms, {t['tokens_per_s']:.0f} tokens/s")


def load_fla():
    try:
        import fla
        from fla.ops.delta_rule import chunk_delta_rule, fused_recurrent_delta_rule

        RESULTS["fla_version"] = getattr(fla, "__version__", "?")
        return {"chunk": chunk_delta_rule, "recurrent": fused_recurrent_delta_rule}
    except Exception as exc:  # noqa: BLE001 - the bench still reports ours without fla
        RESULTS["errors"].append(f"fla unavailable: {exc!r}")
        return None


def table() -> str:
    lines = ["", "=== correctness ==="]
    for name, c in RESULTS["cases"].items():
        if "o" in c:
            lines.append(f"{name:40s} o {c['o']:.2e} final {c.get('final_state', float('nan')):.2e} "
                         f"{'PASS' if c.get('pass', True) else 'FAIL'}")
        else:
            lines.append(f"{name:40s} {'PASS' if c['pass'] else 'FAIL'}")
    for name, c in RESULTS["backward"].items():
        lines.append(f"backward {name:31s} " + " ".join(f"{k} {c[k]:.1e}" for k in ("dq", "dk", "dv", "dbeta", "dh0"))
                     + f" {'PASS' if c['pass'] else 'FAIL'}")
    lines.append("=== forward median ms (bf16, alpha inside) ===")
    lines.append(f"{'shape':18s} {'ours':>8s} {'fla+torch-alpha':>16s} {'fla precomp':>12s} {'speedup':>8s}")
    for shape, row in RESULTS["timing"].items():
        if shape.startswith("T"):
            ours = row["ours"]["median_ms"]
            fa = row.get("fla_alpha_in_torch", {}).get("median_ms", float("nan"))
            fp = row.get("fla_alpha_precomputed", {}).get("median_ms", float("nan"))
            lines.append(f"{shape:18s} {ours:8.3f} {fa:16.3f} {fp:12.3f} {fa / ours:7.2f}x")
    for shape, row in RESULTS["timing"].items():
        if not shape.startswith("T"):
            lines.append(f"{shape:30s} " + "  ".join(f"{k} {v['median_ms']:.3f}" for k, v in row.items() if isinstance(v, dict))
                         + (f"  ({row['tokens_per_s']:.0f} tok/s)" if "tokens_per_s" in row else ""))
    lines.append(f"sweep: {json.dumps(RESULTS['sweep'])}")
    lines.append(f"stages: {json.dumps(RESULTS['stages'])}")
    if RESULTS["errors"]:
        lines.append(f"errors: {RESULTS['errors']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and sweep points")
    parser.add_argument("--skip", default="", help="comma list of: correctness,timing,fwdbwd,layer")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    props = torch.cuda.get_device_properties(0)
    RESULTS["env"] = {"device": props.name, "sms": props.multi_processor_count, "torch": torch.__version__,
                      "triton": triton.__version__, "python": platform.python_version(),
                      "date": time.strftime("%Y-%m-%d")}
    log(f"env {RESULTS['env']}")
    fla = load_fla()
    out = Path(os.environ.get("OUT", "."))
    steps = [("correctness", lambda: run_correctness(fla)), ("timing", lambda: run_timing(fla, args.quick)),
             ("fwdbwd", lambda: run_fwd_bwd(fla, args.quick)), ("layer", lambda: run_layer(args.quick))]
    for name, step in steps:
        if name in skip:
            continue
        t0 = time.time()
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - report and go on: one device call must return everything
            RESULTS["errors"].append(f"{name}: {exc!r}")
            traceback.print_exc()
        log(f"step {name} took {time.time() - t0:.1f} s")
        (out / "gpu_bench.json").write_text(json.dumps(RESULTS, indent=1, default=str))
    print(table())
    failed = [n for n, c in RESULTS["cases"].items() if not c.get("pass", True)]
    failed += [n for n, c in RESULTS["backward"].items() if not c["pass"]]
    return 1 if failed or RESULTS["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
