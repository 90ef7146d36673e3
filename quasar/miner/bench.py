"""Judge a candidate kernel the way validators do: ``python -m quasar.bench --repo WORKSPACE --json``.

The bench runs in a child process (its own session, so the whole tree is killed on timeout or
shutdown) with an environment scrubbed of secrets: the kernel under test may have been written by an
LLM, and must not see GITHUB_TOKEN or the LLM key. Its JSON report is read without importing torch
into the miner.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from quasar.miner.state import BenchResult
from quasar.reasons import REASON_BENCH_CRASHED, REASON_BENCH_INTERRUPTED

log = logging.getLogger("quasar.miner.bench")

_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY|PRIVATE|CREDENTIAL|MNEMONIC", re.I)


def scrubbed_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment minus anything that looks like a secret, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not _SECRET_NAME.search(k)}
    env.update(extra or {})
    return env


class BenchRunner:
    """Runs the bench on a repository checkout; one call, one child process."""

    def __init__(
        self,
        *,
        device: str = "auto",
        quick: bool = False,
        timeout_seconds: float = 1800.0,
        stop: threading.Event | None = None,
        python: str = sys.executable,
    ) -> None:
        self.device = device
        self.quick = quick
        self.timeout_seconds = timeout_seconds
        self.stop = stop or threading.Event()
        self.python = python

    def command(self, repo: Path) -> tuple[list[str], dict[str, str]]:
        argv = [self.python, "-m", "quasar.bench", "--repo", str(repo), "--json", "--no-layer"]
        extra: dict[str, str] = {}
        if self.quick:
            argv.append("--quick")
        if self.device == "cpu":
            argv += ["--device", "cpu"]
        elif self.device.startswith("cuda"):
            argv += ["--device", "cuda"]
            if ":" in self.device:
                extra["CUDA_VISIBLE_DEVICES"] = self.device.split(":", 1)[1]
        return argv, scrubbed_env(extra)

    def run(self, repo: Path, tree_hash: str, *, on_start: Callable[[], None] | None = None) -> BenchResult:
        """Bench the kernel in ``repo`` as it is on disk now; ``tree_hash`` labels the result."""
        with tempfile.TemporaryDirectory(prefix="quasar-bench-cwd-") as cwd:
            return self._run(repo, tree_hash, Path(cwd), on_start)

    def _run(self, repo: Path, tree_hash: str, cwd: Path, on_start: Callable[[], None] | None) -> BenchResult:
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
                why_killed = (
                    f"timeout: the bench ran past MINER_BENCH_TIMEOUT_SECONDS={self.timeout_seconds:g}"
                )
            if why_killed:
                _kill_group(proc)
                break
        proc.wait()
        stdout_reader.join(timeout=10)
        reader.join(timeout=10)
        elapsed = time.monotonic() - started
        if why_killed:
            return BenchResult(
                tree_hash=tree_hash, verdict="error", reason=REASON_BENCH_INTERRUPTED, detail=why_killed
            )
        stdout = "".join(out_chunks)
        try:
            report = json.loads(stdout)
        except ValueError:
            tail = "".join(err_tail).strip()[-800:]
            return BenchResult(
                tree_hash=tree_hash,
                verdict="error",
                reason=REASON_BENCH_CRASHED,
                detail=f"the bench exited {proc.returncode} without a report: {tail}",
            )
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


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
