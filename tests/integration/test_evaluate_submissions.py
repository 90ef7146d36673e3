"""End to end: real submissions (honest and malicious) as git repos, evaluated in the real sandbox on CPU.

Each malicious submission starts from ``quasar kernel init``'s template and replaces
``fla/ops/quasar/__init__.py``. Each is rejected with a clear reason, or (output flood, network,
secrets, writes outside scratch) contained: nothing reaches the validator. Limits are small so that a
bad submission costs seconds. The walls themselves (file system, sockets, processes, privileges,
process/memory/disk caps) are proven under both sandboxes in ``test_sandbox_walls``.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quasar.bench.cases import correctness_cases
from quasar.evaluation.evaluate import EvaluationOptions, EvaluationReport, evaluate
from quasar.evaluation.sandbox import SandboxLimits, SandboxUnavailable, detect
from quasar.kernels.template import init_kernel_repo
from tests.integration.evaluation_helpers import containment_plan

try:
    MECHANISMS = detect()
except SandboxUnavailable as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"no sandbox on this machine: {exc}", allow_module_level=True)

HONEST = "from .chunked import chunk_quasar_torch as _honest\n"


def _commit(repo: Path) -> str:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@quasar.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "submission"], cwd=repo, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()


def _submit(
    base: Path, init_source: str | None, *, wall_s: float = 90, memory_mb: int = 3072, max_pids: int = 128,
    scratch_mb: int = 512, files: dict[str, str] | None = None, **options: object,
) -> EvaluationReport:  # fmt: skip
    repo = base / f"repo-{secrets.token_hex(4)}"
    init_kernel_repo(repo)
    if init_source is not None:
        (repo / "fla/ops/quasar/__init__.py").write_text(textwrap.dedent(init_source))
    for rel, text in (files or {}).items():
        (repo / rel).write_text(text)
    sha = _commit(repo)
    limits = SandboxLimits(
        wall_s=wall_s, memory_bytes=memory_mb * 2**20, max_pids=max_pids, output_bytes=64 * 2**10,
        scratch_bytes=scratch_mb * 2**20, file_bytes=256 * 2**20, tmp_bytes=256 * 2**20,
    )  # fmt: skip
    opts = EvaluationOptions(dev_mode=True, quick=True, limits=limits, work_dir=str(base), **options)  # type: ignore[arg-type]
    report = evaluate(str(repo), sha, opts)
    # Whatever happened, the evaluation removed every directory it made, and only those.
    assert not [p for p in base.iterdir() if p.name.startswith("quasar-")]
    assert repo.is_dir()
    return report


@pytest.fixture
def submit(tmp_path: Path) -> Callable[..., EvaluationReport]:
    """``submit(init_source, wall_s=..., memory_mb=..., files=..., **options)`` -> the evaluation report."""

    def run(init_source: str | None, **kwargs: object) -> EvaluationReport:
        return _submit(tmp_path, init_source, **kwargs)  # type: ignore[arg-type]

    return run


@pytest.fixture(scope="module")
def template_report(tmp_path_factory: pytest.TempPathFactory) -> EvaluationReport:
    """One evaluation of the untouched template, under the validator's own timing plan, read by the
    tests of the full report and of the tie (they only read it)."""
    return _submit(tmp_path_factory.mktemp("template"), None)


def _fails(report: EvaluationReport, *reasons: str) -> None:
    assert report.verdict == "fail", (report.verdict, report.reason, report.detail, report.log_tail[-2000:])
    assert report.reason in reasons, (report.reason, report.detail, report.log_tail[-2000:])
    assert report.detail


def _passes(report: EvaluationReport) -> None:
    assert report.verdict == "pass", (report.reason, report.detail, report.log_tail[-3000:])


# --- honest submissions --------------------------------------------------------------------------------


# The tests whose numbers need a quiet machine are ``exclusive``: no other test runs beside them in a
# parallel run (tests/conftest.py).
@pytest.mark.exclusive
def test_honest_baseline_passes_with_full_report(template_report: EvaluationReport) -> None:
    report = template_report
    _passes(report)
    data = report.to_dict()
    for key in ("median_ms", "baseline_ms", "speedup", "max_rel_error", "kernel_tree_hash"):
        assert data[key] is not None, key
    assert len(report.cases) == len(correctness_cases("cpu")) and all(c.passed for c in report.cases)
    assert len(report.timed_checks) >= 3 and all(c.passed for c in report.timed_checks)
    assert report.evaluation_overhead_s is not None and report.kernel_seconds is not None
    assert report.duration_s < 120


def test_honest_plain_pytorch_loop_passes(submit) -> None:
    # The definition itself: a Python loop over time, the slowest honest kernel there is.
    report = submit(
        """
        from .reference import naive_quasar

        def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
            return naive_quasar(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
        """,
        wall_s=300,
    )
    _passes(report)
    print(
        f"plain loop: {report.duration_s:.1f} s total, kernel {report.kernel_seconds:.1f} s, "
        f"evaluation overhead {report.evaluation_overhead_s:.1f} s"
    )


# --- wrong answers -----------------------------------------------------------------------------------

ZEROS = """
import torch

def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    n = q.shape[0] if cu_seqlens is None else cu_seqlens.numel() - 1
    final = torch.zeros(n, q.shape[2], q.shape[3], v.shape[3]) if output_final_state else None
    return torch.zeros_like(v, dtype=q.dtype), final
"""

RETURNS_Q = """
def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    return q, None
"""

CACHE_BY_SHAPE = (
    HONEST
    + """
_cache = {}

def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    key = (tuple(q.shape), tuple(v.shape), q.dtype, output_final_state, cu_seqlens is None)
    if key not in _cache:
        o, f = _honest(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
        _cache[key] = (o.clone(), None if f is None else f.clone())
    o, f = _cache[key]
    return o.clone(), None if f is None else f.clone()
"""
)

CACHE_BY_POINTER = (
    HONEST
    + """
_cache = {}

def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    key = (q.data_ptr(), k.data_ptr(), v.data_ptr())
    if key not in _cache:
        o, f = _honest(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
        _cache[key] = (o.clone(), None if f is None else f.clone())
    o, f = _cache[key]
    return o.clone(), None if f is None else f.clone()
"""
)

LAZY_SUBCLASS = (
    HONEST
    + """
import torch

class LazyTensor(torch.Tensor):
    '''Looks like an output; its values would be computed only when something reads them.'''

def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    o, f = _honest(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
    return o.as_subclass(LazyTensor), f
"""
)

SMALL_T_ONLY = (
    HONEST
    + """
import torch

def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    if q.shape[1] <= 2048:
        return _honest(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
    # Restarts the state every 2,048 tokens: cheap, and right only for short sequences.
    outs = [_honest(q[:, s:s + 2048], k[:, s:s + 2048], v[:, s:s + 2048], beta, initial_state, False, None)[0]
            for s in range(0, q.shape[1], 2048)]
    o = torch.cat(outs, dim=1)
    final = _honest(q, k, v, beta, initial_state, True, cu_seqlens)[1] if output_final_state else None
    return o, final
"""
)

LOW_PRECISION = (
    HONEST
    + """
import torch

def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    o, f = _honest(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
    # What computing in too low a precision does to the result: a few percent of error.
    noisy = o.float() * (1 + 0.05 * torch.randn(o.shape))
    return noisy.to(o.dtype), f
"""
)


# Approximate kernels: right wherever history hardly matters (isotropic keys of ordinary norm forget
# within a few hundred tokens), wrong on the long-memory cases.
WINDOWED_RESTART = (
    HONEST
    + """
import torch

WINDOW, WARMUP = {window}, {warmup}

def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    # Each window of WINDOW tokens restarts from a state rebuilt over the WARMUP tokens before it, from
    # zero: what a context-parallel kernel that truncates the state it passes between segments does.
    T = q.shape[1]
    if cu_seqlens is not None or T <= WINDOW:
        return _honest(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
    outs, state = [], initial_state
    for s in range(0, T, WINDOW):
        e = min(s + WINDOW, T)
        if s > 0:
            w0 = max(0, s - WARMUP)
            state = _honest(q[:, w0:s], k[:, w0:s], v[:, w0:s], beta, None, True)[1]
        o, last = _honest(q[:, s:e], k[:, s:e], v[:, s:e], beta, state, True)
        outs.append(o)
    return torch.cat(outs, dim=1), (last if output_final_state else None)
"""
)

DECAYED_INITIAL_STATE = (
    HONEST
    + """
import torch

def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    # The output is linear in the initial state; this one lets its share fade over ~20,000 tokens.
    if initial_state is None or cu_seqlens is not None:
        return _honest(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
    o1, f1 = _honest(q, k, v, beta, initial_state, True, None)
    o0, f0 = _honest(q, k, v, beta, None, True, None)
    fade = torch.exp(-torch.arange(q.shape[1]) / 20_000.0).view(1, -1, 1, 1)
    o = (o0.float() + fade * (o1.float() - o0.float())).to(o1.dtype)
    final = f0 + torch.exp(torch.tensor(-q.shape[1] / 20_000.0)) * (f1 - f0)
    return o, (final if output_final_state else None)
"""
)

DROPPED_INITIAL_STATE = (
    HONEST
    + """
def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    # Exact for the first 1,000 tokens, then as if the sequence had started from zero.
    if initial_state is None or cu_seqlens is not None:
        return _honest(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
    o = _honest(q, k, v, beta, initial_state, False, None)[0]
    o0, f0 = _honest(q, k, v, beta, None, True, None)
    o[:, 1000:] = o0[:, 1000:]
    return o, (f0 if output_final_state else None)
"""
)

ONE_HEAD_OFF = (
    HONEST
    + """
import torch

def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    # 3% off on one head of one of hundreds of packed sequences: within tolerance over the whole
    # output, plain on that (sequence, head).
    o, f = _honest(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
    if cu_seqlens is not None and cu_seqlens.numel() > 100:
        s, e = int(cu_seqlens[150]), int(cu_seqlens[151])
        o[:, s:e, 1] *= 1.03
    return o, f
"""
)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(WINDOWED_RESTART.format(window=4096, warmup=512), id="restarts_every_4096_tokens"),
        pytest.param(WINDOWED_RESTART.format(window=4096, warmup=2048), id="long_warmup_every_4096"),
        pytest.param(WINDOWED_RESTART.format(window=1024, warmup=1024), id="restarts_every_1024_tokens"),
        pytest.param(DECAYED_INITIAL_STATE, id="decays_the_initial_state"),
        pytest.param(DROPPED_INITIAL_STATE, id="drops_the_initial_state"),
        pytest.param(ONE_HEAD_OFF, id="one_head_of_some_sequences_off"),
    ],
)
def test_approximate_kernels_fail(submit, source: str) -> None:
    report = submit(source)
    _fails(report, "incorrect_output", "incorrect_final_state")
    # Every case the approximation gets right passed: the long-memory (or per-slice) check caught it.
    failed = report.cases[-1]
    assert all(c.passed for c in report.cases[:-1]) and not failed.passed
    assert failed.shape.get("keys") in ("tiny", "low_rank") or "sequence" in (failed.detail or "")


@pytest.mark.parametrize(
    ("source", "reasons"),
    [
        pytest.param(ZEROS, ("incorrect_output",), id="returns_zeros"),
        pytest.param(RETURNS_Q, ("incorrect_output", "wrong_shape"), id="returns_q"),
        pytest.param(CACHE_BY_SHAPE, ("incorrect_output", "nan_or_inf"), id="caches_by_shape"),
        # A reused pointer can also belong to an input of another case, so the cached answer has the
        # wrong shape: any of the three is the cache caught.
        pytest.param(
            CACHE_BY_POINTER, ("incorrect_output", "nan_or_inf", "wrong_shape"), id="caches_by_data_pointer"
        ),
        pytest.param(LAZY_SUBCLASS, ("tensor_subclass",), id="lazy_tensor_subclass"),
        pytest.param(SMALL_T_ONLY, ("incorrect_output",), id="correct_only_at_small_t"),
        pytest.param(LOW_PRECISION, ("incorrect_output",), id="drops_precision"),
    ],
)
def test_wrong_answers_fail(submit, source: str, reasons: tuple[str, ...]) -> None:
    report = submit(source)
    _fails(report, *reasons)
    if source in (CACHE_BY_SHAPE, CACHE_BY_POINTER):
        # A cache pays off only on repeated shapes or buffers: the correctness cases pass, and the
        # timed runs (fresh values in reused buffers) catch it, screened against the baseline's
        # output or checked against the reference.
        assert all(c.passed for c in report.cases)
        screened = "against the baseline's output" in (report.detail or "")
        assert screened or not report.timed_checks[-1].passed, report.detail


# --- lying about time ----------------------------------------------------------------------------------

PATCHES_TIMER = (
    HONEST
    + """
import sys, time

_real = time.perf_counter
_fake = [0.0]

def _frozen():
    # Time hardly moves: every run would look a thousand times faster than it is.
    _fake[0] += 1e-6
    return _fake[0]

# Every reference to the real timer in every loaded module (the harness's own copies included).
for module in list(sys.modules.values()):
    try:
        for name, value in list(vars(module).items()):
            if value is _real:
                setattr(module, name, _frozen)
    except Exception:
        pass

def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    time.sleep(0.05)
    return _honest(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
"""
)


# Moves its work into a step of the harness, not the call: the answer is computed (with 50 ms of extra
# work) when the harness reads a slot's inputs, so the kernel itself only returns it.
HOOKS_THE_HARNESS = (
    HONEST
    + """
import time
from quasar.evaluation import arena

_real_inputs = arena.Arena.inputs
_answers = {}

def _inputs_and_answer(self, slot):
    q, k, v, beta = _real_inputs(self, slot)
    time.sleep(0.05)
    _answers[q.data_ptr()] = _honest(q, k, v, beta)
    return q, k, v, beta

arena.Arena.inputs = _inputs_and_answer

def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    if q.data_ptr() in _answers:
        return _answers.pop(q.data_ptr())
    return _honest(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
"""
)


def _charged_at_least(report: EvaluationReport, extra_ms: float) -> None:
    """Passed, and charged for ``extra_ms`` per call beyond the baseline, by the parent's clock alone."""
    _passes(report)
    timing = report.timing
    assert timing is not None and timing.method == "parent_clock_frozen_batches", timing
    # 50 ms against a kernel of ~10-20 ms: far beyond the noise of a shared machine.
    assert timing.median_ms >= timing.baseline_ms + 0.8 * extra_ms, report.wall["comparison"]
    assert timing.speedup_ci_high < 1.0 and not timing.inconclusive, timing


@pytest.mark.exclusive
def test_patched_timer_changes_nothing(submit) -> None:
    # Every timer inside the sandbox reads what the submission wants; none of them is the clock.
    _charged_at_least(submit(PATCHES_TIMER), 50.0)


@pytest.mark.exclusive
def test_work_moved_into_the_harness_is_charged(submit) -> None:
    _charged_at_least(submit(HOOKS_THE_HARNESS), 50.0)


@pytest.mark.exclusive
def test_untouched_template_ties_with_the_baseline(template_report: EvaluationReport, submit) -> None:
    # The same kernel in two sandboxed workers: scored within the resolution of a shared 2-core
    # machine. A 95% interval clears 1 + WIN_MARGIN for a tie in about 1 run of 40 by construction
    # (seen here once in 16 runs), so an apparent win is evaluated again: a tie counted twice in a
    # row would be a bias, not chance. The first evaluation is the one the full-report test reads.
    for attempt in range(2):
        report = template_report if attempt == 0 else submit(None)
        _passes(report)
        timing = report.timing
        comparison = {k: v for k, v in report.wall["comparison"].items() if k != "inside_ms"}
        assert abs(timing.speedup - 1.0) <= 0.06, (timing.speedup, timing.speedup_ci_low, comparison)
        if timing.speedup_ci_low < 1.01:
            return
    raise AssertionError(f"a tie counted as a win twice in a row: {timing}, {comparison}")


def test_raises_at_import(submit) -> None:
    report = submit("raise RuntimeError('broken on purpose')\n")
    _fails(report, "import_failed")
    assert "broken on purpose" in (report.detail or "")


def test_missing_entry_point(submit) -> None:
    _fails(submit("X = 1\n"), "entry_point_missing")


def test_hangs_at_import(submit) -> None:
    started = time.monotonic()
    report = submit("import time\nwhile True:\n    time.sleep(1)\n", import_timeout_s=5)
    _fails(report, "timeout")
    assert (report.detail or "").startswith("importing the entry point"), report.detail
    assert time.monotonic() - started < 60


def test_hangs_in_the_call(submit) -> None:
    source = "import time\n\ndef chunk_quasar(*args, **kwargs):\n    while True:\n        time.sleep(1)\n"
    started = time.monotonic()
    # The wall (counted from the worker's start) leaves ~10-20 s of hanging in the first call.
    report = submit(source, wall_s=25)
    _fails(report, "timeout")
    assert (report.detail or "").startswith("running the correctness cases"), report.detail
    assert time.monotonic() - started < 60


def test_exits_mid_run(submit) -> None:
    source = HONEST + textwrap.dedent(
        """
        import os
        _calls = [0]

        def chunk_quasar(*args, **kwargs):
            _calls[0] += 1
            if _calls[0] == 3:
                os._exit(0)
            return _honest(*args, **kwargs)
        """
    )
    _fails(submit(source), "worker_exited")


# --- resource abuse ----------------------------------------------------------------------------------


def test_a_gigabyte_of_output_is_capped(submit) -> None:
    source = "import sys\n_line = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(_line)\n" + (
        "from .chunked import chunk_quasar_torch as chunk_quasar\n"
    )
    report = submit(source, wall_s=120, comparison=containment_plan())
    _passes(report)
    assert "bytes of output dropped" in report.log_tail
    assert len(report.log_tail) <= 5000


# --- escapes -----------------------------------------------------------------------------------------


@pytest.fixture
def loopback_server() -> Iterator[tuple[int, list[bytes]]]:
    received: list[bytes] = []
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    received.append(conn.recv(1024) or b"<connected>")
                except OSError:
                    received.append(b"<connected>")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join(timeout=2)
    server.close()


def test_socket_to_loopback_is_blocked(submit, loopback_server) -> None:
    port, received = loopback_server
    source = HONEST + textwrap.dedent(
        f"""
        import socket
        for host in ("127.0.0.1", "localhost", "::1"):
            try:
                with socket.create_connection((host, {port}), timeout=2) as s:
                    s.sendall(b"ESCAPED")
                print("NET-ESCAPE", host)
            except OSError as exc:
                print("network blocked:", host, exc)
        chunk_quasar = _honest
        """
    )
    report = submit(source, comparison=containment_plan())
    _passes(report)
    assert received == [], received
    assert "network blocked" in report.log_tail and "NET-ESCAPE" not in report.log_tail


def test_secrets_of_the_parent_are_out_of_reach(
    submit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = f"canary-{secrets.token_hex(8)}"
    monkeypatch.setenv("DATABASE_URL", f"postgresql://quasar:{canary}@db/quasar")
    monkeypatch.setenv("GITHUB_TOKEN", canary)
    secret_file = tmp_path / "wallet-hotkey.json"
    secret_file.write_text(canary)
    source = HONEST + textwrap.dedent(
        f"""
        import glob, os, re
        found = []
        found += [f"env {{k}}={{v}}" for k, v in os.environ.items()]
        for path in [{str(secret_file)!r}, "/proc/1/environ", f"/proc/{{os.getppid()}}/environ",
                     *glob.glob("/proc/*/environ"), *glob.glob("/proc/*/cmdline"),
                     os.path.expanduser("~/.bittensor"), "/root/.bittensor", "/work/main/.env"]:
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
                # What leaked, not the whole file: a long /proc listing must not push lines out of the tail.
                leaked = re.findall(rb"canary-[0-9a-f]{{16}}|DATABASE_URL|GITHUB_TOKEN", data)
                found.append(f"read {{path}}: {{len(data)}} bytes {{leaked!r}}")
            except OSError as exc:
                found.append(f"blocked {{path}}: {{type(exc).__name__}}")
        print("\\n".join(found))
        chunk_quasar = _honest
        """
    )
    report = submit(source, comparison=containment_plan())
    _passes(report)
    assert canary not in report.log_tail
    assert f"blocked {secret_file}" in report.log_tail
    assert "DATABASE_URL" not in report.log_tail and "GITHUB_TOKEN" not in report.log_tail


def test_writes_outside_scratch_are_contained(submit, tmp_path: Path) -> None:
    token = secrets.token_hex(6)
    targets = [tmp_path / f"escape-{token}", Path(f"/tmp/escape-{token}"), Path.cwd() / f"escape-{token}"]
    source = HONEST + textwrap.dedent(
        f"""
        import os
        here = os.path.dirname(os.path.abspath(__file__))
        for path in {[str(t) for t in targets]!r} + [os.path.join(here, "escape"), "/escape-{token}"]:
            try:
                with open(path, "w") as fh:
                    fh.write("escaped")
                print("wrote", path)
            except OSError as exc:
                print("write blocked:", path, type(exc).__name__)
        chunk_quasar = _honest
        """
    )
    report = submit(source, comparison=containment_plan())
    _passes(report)
    for target in targets:
        assert not target.exists(), target
    assert "write blocked" in report.log_tail
    assert not Path(f"/escape-{token}").exists()


# --- GPU only ------------------------------------------------------------------------------------------

# The baseline's own Triton kernel, so the honest and the hidden work take the same time.
SIDE_STREAM = """
from .fast import chunk_quasar as _honest
import torch

_stream = None

def chunk_quasar(q, k, v, beta, initial_state=None, output_final_state=False, cu_seqlens=None):
    global _stream
    _stream = _stream or torch.cuda.Stream()
    # Returns at once; the real work runs on another stream, where the caller's events do not look.
    _stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(_stream):
        o, f = _honest(q, k, v, beta, initial_state, output_final_state, cu_seqlens)
    return o, f
"""


# Every synchronisation of the worker is a no-op: each batch answers while its kernels still run.
ANSWERS_EARLY = """
from .fast import chunk_quasar as _honest
from quasar.evaluation import worker

worker.Worker._sync = lambda self: None
chunk_quasar = _honest
"""


@pytest.mark.gpu
@pytest.mark.skipif(
    not (os.environ.get("CUDA_VISIBLE_DEVICES") != "" and __import__("torch").cuda.is_available()),
    reason="GPU timing needs a CUDA device; run on the GPU machine",
)
@pytest.mark.parametrize("source", [SIDE_STREAM, ANSWERS_EARLY], ids=["side_stream", "answers_early"])
def test_gpu_work_hidden_from_the_call_is_timed_or_caught(submit, source: str) -> None:
    gpu = {"device": "cuda", "gpu_index": 0, "wall_s": 600, "memory_mb": 32768, "scratch_mb": 4096}
    honest = submit(None, **gpu)
    _passes(honest)
    # The honest kernel's outputs were allocated where the parent reads them: nothing was copied.
    assert honest.wall["comparison"]["outputs_copied"] == 0, honest.wall["comparison"]
    report = submit(source, **gpu)
    print(
        f"honest {honest.median_ms:.3f} ms; hidden {report.verdict} {report.reason or ''} {report.median_ms} ms"
    )
    # The parent's clock runs until the outputs are copied out of the worker's reach: work finished
    # before that is charged, work finished after it leaves NaN in the copy.
    if report.verdict == "pass":
        assert report.median_ms >= 0.95 * honest.median_ms
    else:
        _fails(report, "interference", "incorrect_output", "nan_or_inf")
