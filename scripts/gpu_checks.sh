#!/usr/bin/env bash
# One device call that checks what only a GPU can: the fast kernel's remaining GPU tests, the bench
# harness's CUDA path (events, 100k cases, layer), the side-stream cheat under evaluation, and the
# logit-verification calibration at Qwen2.5-0.5B scale. Each step has its own time limit so one
# slow step cannot starve the others (CALIB_S=0 skips the calibration). Logs go to $OUT (or ./gpu-checks).
set -u
OUT=${OUT:-gpu-checks}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi -L; python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'

echo "== fast kernel GPU tests"
# In parallel: one at a time the file takes over 5 minutes on an H100, nearly all of it compiling.
timeout "${TESTS_S:-240}" python3 -m pytest -q -n "${TEST_PROCS:-8}" --noconftest -p no:cacheprovider \
    tests/unit/kernels/test_fast_gpu.py ${GPU_TESTS_K:+-k "$GPU_TESTS_K"} >"$OUT/gpu_tests.log" 2>&1
echo "rc=$?"; tail -n 12 "$OUT/gpu_tests.log"

echo "== quasar bench on cuda"
timeout "${BENCH_S:-150}" python3 -m quasar.bench --device cuda --entry quasar.kernels:chunk_quasar --json >"$OUT/bench_gpu.json" 2>"$OUT/bench_gpu.err"
echo "rc=$?"; tail -c 1200 "$OUT/bench_gpu.err"
python3 - "$OUT/bench_gpu.json" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as exc:
    print("no bench report:", exc); raise SystemExit
print("verdict", d["verdict"], d.get("reason"), "median_ms", d.get("median_ms"), "baseline_ms", d.get("baseline_ms"),
      "max_rel_error", d.get("max_rel_error"), "peak_mem_mb", d.get("peak_mem_mb"))
for c in d.get("cases", []):
    print(f'  {c["name"]:<28} {c["dtype"]:<9} rel={c.get("rel_error")} passed={c["passed"]}')
print("layer", d.get("layer"))
PY

echo "== GPU work hidden from the call, under evaluation"
# The sandboxed worker starts with a scrubbed environment (no PYTHONPATH), so quasar must be installed
# where the interpreter finds it, as on a validator; a plain copy needs no build tools or network.
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf "$site/quasar" && cp -r quasar "$site/quasar" && chmod -R a+rX "$site/quasar"
# Two evaluations with T = 100k cases: about 3 minutes on an H100.
timeout "${SIDE_S:-240}" python3 -m pytest -q --noconftest -p no:cacheprovider \
    -rA tests/integration/test_evaluate_submissions.py -k gpu_work_hidden >"$OUT/side_stream.log" 2>&1
echo "rc=$?"; tail -n 8 "$OUT/side_stream.log"

[ "${CALIB_S:-170}" = 0 ] && exit 0
echo "== logit verification calibration"
timeout "${CALIB_S:-170}" python3 scripts/gpu_calibrate.py --challenges "${CALIB_CHALLENGES:-4}" \
    --budget-s "${CALIB_BUDGET_S:-140}" >"$OUT/calibration.log" 2>&1
echo "rc=$?"; tail -n 45 "$OUT/calibration.log"
