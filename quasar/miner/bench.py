"""Judge a candidate kernel the way validators do: the bench of ``python -m quasar.bench --repo R --json``.

Every bench runs in the validators' sandbox (``quasar.evaluation.sandbox``, started the way an
evaluation starts its worker: ``channel.start_process``): no network, an allow-listed environment, only
the candidate's ``fla/`` and the interpreter mounted read-only, one scratch directory, uid 65534 when
the miner is root, process, memory and time caps, one GPU. The kernel under test may have been
written by an LLM; there it cannot read the wallet, GITHUB_TOKEN or the LLM key. The report comes
back over the evaluation's reply pipe (``quasar.miner.candidate`` is the sandboxed side).

Where no sandbox can be built, candidates are refused (a ``sandbox_unavailable`` error, never a
verdict on the kernel) unless the operator set MINER_ALLOW_UNSANDBOXED_CANDIDATES: then the bench
runs as a plain child process with an environment scrubbed of secret-named variables, and every
such run says so in one warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quasar.devices import Device, parse_device
from quasar.miner.state import BenchResult
from quasar.reasons import REASON_BENCH_CRASHED, REASON_BENCH_INTERRUPTED, REASON_SANDBOX_UNAVAILABLE

if TYPE_CHECKING:
    from quasar.evaluation.sandbox import Sandbox

log = logging.getLogger("quasar.miner.bench")

#: What one way of running the bench ends with: its report, or (reason, detail) of why there is
#: none; and the seconds it took.
_Run = tuple[dict[str, Any] | None, tuple[str, str] | None, float]

_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY|PRIVATE|CREDENTIAL|MNEMONIC", re.I)
#: The module that runs the bench inside the sandbox.
CANDIDATE_MODULE = "quasar.miner.candidate"
#: Walls a candidate must get: bubblewrap, or (as root, where bubblewrap fails) the unshare walls.
CANDIDATE_REQUIREMENT = "namespaces"
OPT_IN = "MINER_ALLOW_UNSANDBOXED_CANDIDATES"


class CandidatesRefused(RuntimeError):
    """No sandbox can be built here and the operator did not opt in to unsandboxed candidates."""


def scrubbed_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment minus anything that looks like a secret, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not _SECRET_NAME.search(k)}
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Isolation:
    """How candidates are isolated: the sandbox's caps, and whether a missing sandbox may be skipped."""

    allow_unsandboxed: bool = False
    memory_bytes: int = 32 * 2**30
    max_pids: int = 1024
    cgroup_parent: str | None = None


def _gpu_index(device: Device) -> int | None:
    """The GPU the sandbox mounts for DEVICE (``auto``: the first one, when this machine has one)."""
    if device.kind == "cpu":
        return None
    if device.kind == "cuda":
        return device.index or 0
    # Asked of the device node rather than torch: the miner's own process never needs CUDA.
    return 0 if os.path.exists("/dev/nvidia0") else None


class BenchRunner:
    """Runs the bench on a repository checkout; one call, one sandboxed child process."""

    def __init__(
        self,
        *,
        device: str = "auto",
        quick: bool = False,
        timeout_seconds: float = 1800.0,
        stop: threading.Event | None = None,
        python: str = sys.executable,
        isolation: Isolation | None = None,
    ) -> None:
        self.device = parse_device(device)  # ValueError for a DEVICE that is not one
        self.quick = quick
        self.timeout_seconds = timeout_seconds
        self.stop = stop or threading.Event()
        self.python = python
        self.isolation = isolation or Isolation()

    # -- the sandbox --
    def _sandbox(self) -> tuple[Sandbox | None, str | None]:
        """The validators' sandbox for one run, or None and why none can be built here."""
        from quasar.evaluation.sandbox import Sandbox, SandboxLimits, SandboxUnavailable

        limits = SandboxLimits(
            wall_s=self.timeout_seconds,
            memory_bytes=self.isolation.memory_bytes,
            max_pids=self.isolation.max_pids,
        )
        try:
            sandbox = Sandbox(
                limits,
                require=CANDIDATE_REQUIREMENT,
                cgroup_parent=self.isolation.cgroup_parent,
                gpu_index=_gpu_index(self.device),
            )
        except SandboxUnavailable as exc:
            return None, " ".join(str(exc).split())  # one line: a probe's stderr may span several
        return sandbox, None

    def check_isolation(self) -> str:
        """How candidates will run here, in words; raises CandidatesRefused (one line) when they cannot."""
        sandbox, why = self._sandbox()
        if sandbox is not None:
            return f"in the validators' sandbox ({sandbox.mechanisms.describe()})"
        if not self.isolation.allow_unsandboxed:
            raise CandidatesRefused(
                f"candidate kernels cannot run here, {why.rstrip('.')}. Or set {OPT_IN}=true to bench them without "
                "a sandbox (LLM-written code could then read your wallet and tokens)"
            )
        return f"WITHOUT a sandbox ({OPT_IN}=true; no sandbox can be built here: {why})"

    # -- running --
    def run(self, repo: Path, tree_hash: str, *, on_start: Callable[[], None] | None = None) -> BenchResult:
        """Bench the kernel in ``repo`` as it is on disk now; ``tree_hash`` labels the result."""
        sandbox, why = self._sandbox()
        if sandbox is None:
            if not self.isolation.allow_unsandboxed:
                return BenchResult(
                    tree_hash=tree_hash, verdict="error", reason=REASON_SANDBOX_UNAVAILABLE,
                    detail=f"not run: no sandbox can be built ({why}); set {OPT_IN}=true to run candidates without one",
                )  # fmt: skip
            log.warning(
                "candidate %s runs WITHOUT a sandbox (%s=true): its code can read this machine's files, the "
                "wallet included", tree_hash[:12], OPT_IN,
            )  # fmt: skip
            with tempfile.TemporaryDirectory(prefix="quasar-bench-cwd-") as cwd:
                return self._finish(tree_hash, *self._run_plain(repo, Path(cwd), on_start))
        return self._finish(tree_hash, *self._run_sandboxed(sandbox, repo, on_start))

    def _finish(
        self, tree_hash: str, report: dict[str, Any] | None, problem: tuple[str, str] | None, elapsed: float
    ) -> BenchResult:
        if problem is not None:
            reason, detail = problem
            return BenchResult(tree_hash=tree_hash, verdict="error", reason=reason, detail=detail)
        assert report is not None
        result = BenchResult(
            tree_hash=tree_hash,
            verdict=str(report.get("verdict", "error")),
            reason=report.get("reason"),
            detail=report.get("detail"),
            median_ms=report.get("median_ms"),
            baseline_ms=report.get("baseline_ms"),
            speedup=report.get("speedup"),
            max_rel_error=report.get("max_rel_error"),
            device=report.get("device"),
        )
        log.info("bench of %s took %.0fs: %s", tree_hash[:12], elapsed, result.summary())
        return result

    def _timeout_detail(self) -> str:
        return f"timeout: the bench ran past MINER_BENCH_TIMEOUT_SECONDS={self.timeout_seconds:g}"

    def _run_sandboxed(self, sandbox: Sandbox, repo: Path, on_start: Callable[[], None] | None) -> _Run:
        from quasar.evaluation.channel import Gone, Stop, start_process
        from quasar.evaluation.sandbox import SandboxUnavailable, forget_probes

        started = time.monotonic()
        # The sandbox mounts one GPU (`_gpu_index`), plain cuda inside it; auto is decided in there.
        device = None if self.device.kind == "auto" else self.device.kind
        scratch = Path(tempfile.mkdtemp(prefix="quasar-bench-scratch-"))
        try:
            try:
                channel = start_process(sandbox, CANDIDATE_MODULE, scratch, {"candidate": repo})
            except (SandboxUnavailable, OSError) as exc:
                return None, (REASON_SANDBOX_UNAVAILABLE, f"the sandbox could not be started: {exc}"), 0.0
            process = channel.process
            if on_start:
                on_start()
            reply: dict[str, Any] | None = None
            why_killed = malformed = None
            try:
                channel.send("bench", repo=sandbox.inside("candidate", repo), device=device, quick=self.quick)
                while reply is None and why_killed is None and malformed is None:
                    if self.stop.is_set():
                        why_killed = "stopped: the miner is shutting down"
                        break
                    try:
                        reply = channel.recv(0.5)
                    except Gone as gone:
                        if gone.ended or not process.alive:
                            break
                        if process.remaining() <= 0:
                            why_killed = self._timeout_detail()
                    except Stop as bad:
                        malformed = bad.detail
            except Gone:
                pass  # it ended before reading the command: its result below says how
            finally:
                result = process.finish(kill=True)
                channel.close()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        elapsed = time.monotonic() - started
        tail = result.output.decode("utf-8", errors="replace").strip()[-800:]
        if why_killed is not None or result.timed_out:
            return None, (REASON_BENCH_INTERRUPTED, why_killed or self._timeout_detail()), elapsed
        if malformed is not None:
            return None, (REASON_BENCH_CRASHED, f"the sandboxed bench: {malformed}; {tail}"), elapsed
        if reply is None:
            if result.walls_failed:
                forget_probes()  # probed again before the next run
                return None, (REASON_SANDBOX_UNAVAILABLE, f"the sandbox could not be built: {tail}"), elapsed
            limit = (
                " (memory limit reached)" if result.memory_exceeded
                else " (process limit reached)" if result.pids_exceeded
                else " (scratch limit reached)" if result.scratch_exceeded else ""
            )  # fmt: skip
            detail = f"the sandboxed bench exited {result.returncode}{limit} without a report: {tail}"
            return None, (REASON_BENCH_CRASHED, detail), elapsed
        report = reply.get("report")
        if not reply.get("ok") or not isinstance(report, dict):
            return (
                None,
                (REASON_BENCH_CRASHED, f"the sandboxed bench failed: {reply.get('error')}; {tail}"),
                elapsed,
            )
        return report, None, elapsed

    def command(self, repo: Path) -> tuple[list[str], dict[str, str]]:
        """The unsandboxed bench (MINER_ALLOW_UNSANDBOXED_CANDIDATES only): argv and environment."""
        argv = [self.python, "-m", "quasar.bench", "--repo", str(repo), "--json", "--no-layer"]
        extra: dict[str, str] = {}
        if self.quick:
            argv.append("--quick")
        if self.device.kind != "auto":
            argv += ["--device", self.device.kind]
        if self.device.index is not None:
            extra["CUDA_VISIBLE_DEVICES"] = str(self.device.index)
        return argv, scrubbed_env(extra)

    def _run_plain(self, repo: Path, cwd: Path, on_start: Callable[[], None] | None) -> _Run:
        argv, env = self.command(repo)
        started = time.monotonic()
        # The working directory is empty: `python -m` puts it first on sys.path, and a repository's own
        # top-level `quasar/` folder must not stand in for the bench.
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        if on_start:
            on_start()
        out_chunks: list[str] = []
        err_tail: list[str] = []

        def drain_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                err_tail.append(line)
                del err_tail[:-40]
                log.debug("bench: %s", line.rstrip())

        reader = threading.Thread(target=drain_stderr, daemon=True)
        reader.start()
        stdout_reader = threading.Thread(
            target=lambda: out_chunks.append(proc.stdout.read() if proc.stdout else ""), daemon=True
        )
        stdout_reader.start()
        why_killed = None
        while proc.poll() is None:
            if self.stop.wait(0.2):
                why_killed = "stopped: the miner is shutting down"
            elif time.monotonic() - started > self.timeout_seconds:
                why_killed = self._timeout_detail()
            if why_killed:
                _kill_group(proc)
                break
        proc.wait()
        stdout_reader.join(timeout=10)
        reader.join(timeout=10)
        elapsed = time.monotonic() - started
        if why_killed:
            return None, (REASON_BENCH_INTERRUPTED, why_killed), elapsed
        try:
            report = json.loads("".join(out_chunks))
        except ValueError:
            tail = "".join(err_tail).strip()[-800:]
            return (
                None,
                (REASON_BENCH_CRASHED, f"the bench exited {proc.returncode} without a report: {tail}"),
                elapsed,
            )
        return report, None, elapsed


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
