"""A long-lived helper process on a candidate kernel, isolated exactly as its bench is (the tuner's probe).

The tuner times many settings of one kernel in one process (the Triton compiles stay warm between
them), so it cannot use ``BenchRunner.run``, which is one process per bench. :func:`start_helper`
starts ``python -m MODULE REPLY_FD`` (a ``quasar.evaluation.protocol`` command server) under the same
rule as every bench: in the validators' sandbox with the candidate's ``fla/`` mounted read-only,
else, only where the operator set MINER_ALLOW_UNSANDBOXED_CANDIDATES, as a plain child process with a
scrubbed environment (said in a warning), else not at all. :meth:`Helper.call` sends one command and
returns its reply; every failure is a :class:`HelperError` with one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quasar.miner.bench import OPT_IN, BenchRunner, scrubbed_env

if TYPE_CHECKING:
    from quasar.evaluation.channel import Channel

log = logging.getLogger("quasar.miner.helper")

#: How much of a helper's output a failure quotes.
TAIL_CHARS = 600


class HelperError(RuntimeError):
    """A helper could not start, failed a command, ended or did not answer in time; one line."""


@dataclass
class _PlainResult:
    output: bytes


class _PlainProcess:
    """A helper as a plain child process: the parts of a ``SandboxProcess`` that Channel and Helper use."""

    def __init__(self, proc: subprocess.Popen[bytes], output: Path, wall_s: float) -> None:
        self.proc = proc
        self._output = output
        self.deadline = time.monotonic() + wall_s

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def finish(self, *, kill: bool = False) -> _PlainResult:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        if kill or self.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return _PlainResult(self._output.read_bytes()[-TAIL_CHARS * 4 :] if self._output.exists() else b"")


def _one_line(output: bytes) -> str:
    return " ".join(output.decode("utf-8", errors="replace").split())[-TAIL_CHARS:] or "no output"


class Helper:
    """A running helper: ``repo`` is where it sees the candidate's files."""

    def __init__(self, channel: Channel, repo: str, stop: threading.Event) -> None:
        self._channel = channel
        self.repo = repo
        self._stop = stop
        self._tail: str | None = None

    def close(self) -> str:
        """End the helper (if it still runs) and return the tail of its output, on one line."""
        if self._tail is None:
            result = self._channel.process.finish(kill=True)
            self._channel.close()
            self._tail = _one_line(result.output)
        return self._tail

    def call(self, op: str, timeout_s: float, **data: Any) -> dict[str, Any]:
        """Send ``op`` with ``data``; its reply (``ok`` true), else HelperError."""
        from quasar.evaluation.channel import Gone, Stop

        if self._tail is not None:
            raise HelperError(f"{op}: the helper has ended: {self._tail}")
        deadline = time.monotonic() + timeout_s
        try:
            self._channel.send(op, **data)
            while True:
                if self._stop.is_set():
                    raise HelperError("stopped: the miner is shutting down")
                try:
                    reply = self._channel.recv(max(0.05, min(0.5, deadline - time.monotonic())))
                    break
                except Gone as gone:
                    if gone.ended or not self._channel.process.alive:
                        raise HelperError(f"{op}: the helper ended: {self.close()}") from None
                    if time.monotonic() >= deadline or self._channel.process.remaining() <= 0:
                        # Its late answer would pass for the next command's: it goes, and later calls fail.
                        self.close()
                        raise HelperError(f"{op}: no answer within {timeout_s:g} s") from None
        except Gone:
            raise HelperError(f"{op}: the helper ended: {self.close()}") from None
        except Stop as bad:
            self.close()
            raise HelperError(f"{op}: {bad.detail}") from None
        if not reply.get("ok"):
            raise HelperError(f"{op}: {' '.join(str(reply.get('error')).split())}")
        return reply


def _start_plain(runner: BenchRunner, module: str, scratch: Path) -> Channel:
    from quasar.evaluation.channel import Channel

    reply_r, reply_w = os.pipe()
    output = scratch / "output.log"
    try:
        with output.open("wb") as sink:
            # The working directory is the empty scratch: `python -m` puts it first on sys.path.
            proc = subprocess.Popen(
                [runner.python, "-B", "-m", module, str(reply_w)], cwd=scratch, env=scrubbed_env(),
                stdin=subprocess.PIPE, stdout=sink, stderr=subprocess.STDOUT, pass_fds=(reply_w,),
                start_new_session=True,
            )  # fmt: skip
    except BaseException:
        os.close(reply_r)
        raise
    finally:
        os.close(reply_w)
    process = _PlainProcess(proc, output, runner.timeout_seconds)
    return Channel(process, reply_r, module.rsplit(".", 1)[-1])  # type: ignore[arg-type]


@contextmanager
def start_helper(runner: BenchRunner, repo: Path, module: str) -> Iterator[Helper]:
    """``python -m MODULE`` on the candidate in ``repo``, isolated as ``runner`` isolates a bench."""
    from quasar.evaluation.channel import start_process
    from quasar.evaluation.sandbox import SandboxUnavailable

    # The bench's own sandbox (its caps, its one GPU), so a helper gets no more than a bench does.
    sandbox, why = runner._sandbox()
    scratch = Path(tempfile.mkdtemp(prefix="quasar-helper-"))
    try:
        if sandbox is not None:
            try:
                channel = start_process(sandbox, module, scratch, {"candidate": repo})
            except (SandboxUnavailable, OSError) as exc:
                raise HelperError(f"the sandbox could not be started: {' '.join(str(exc).split())}") from None
            inside = sandbox.inside("candidate", repo)
        elif runner.isolation.allow_unsandboxed:
            log.warning(
                "the tuner's probe runs the candidate WITHOUT a sandbox (%s=true): its code can read this "
                "machine's files, the wallet included", OPT_IN,
            )  # fmt: skip
            channel = _start_plain(runner, module, scratch)
            inside = str(repo)
        else:
            raise HelperError(
                f"not run: no sandbox can be built ({why}); set {OPT_IN}=true to run candidates without one"
            )
        helper = Helper(channel, inside, runner.stop)
        try:
            yield helper
        finally:
            helper.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
