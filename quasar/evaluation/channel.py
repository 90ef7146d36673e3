"""The evaluation parent's end of the line protocol (``protocol``): start a sandboxed child with a
reply pipe, send it JSON commands, read its JSON replies within a deadline, on the parent's clock."""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import time
from pathlib import Path
from typing import Any

from quasar.bench.schema import VERDICT_FAIL
from quasar.reasons import REASON_KERNEL_EXCEPTION, REASON_PROTOCOL, WORKER_ERROR_CODES

from .sandbox import Sandbox, SandboxProcess

_MAX_REPLY_BYTES = 1 << 20


class Stop(Exception):
    """Ends an evaluation early with a verdict (``fail`` or ``error``), a reason code and a detail."""

    def __init__(self, verdict: str, reason: str, detail: str) -> None:
        super().__init__(f"{verdict} {reason}: {detail}")
        self.verdict, self.reason, self.detail = verdict, reason, detail


class Gone(Exception):
    """The sandboxed process ended (``ended``: its reply pipe closed) or stopped answering."""

    def __init__(self, message: str, *, ended: bool = False) -> None:
        super().__init__(message)
        self.ended = ended


class Channel:
    """JSON commands to a sandboxed process's stdin, JSON replies from its reply pipe, timed by us."""

    def __init__(self, process: SandboxProcess, reply_fd: int, name: str) -> None:
        self.process = process
        self._fd = reply_fd
        self._buffer = b""
        self.name = name

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def send(self, op: str, **data: Any) -> None:
        stdin = self.process.proc.stdin
        assert stdin is not None
        try:
            stdin.write((json.dumps({"op": op, **data}) + "\n").encode())
            stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise Gone(f"{self.name} closed its input") from exc

    def recv(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + min(timeout_s, self.process.remaining())
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Gone(f"{self.name} did not answer in time")
            ready, _, _ = select.select([self._fd], [], [], min(remaining, 0.5))
            if not ready:
                continue
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                raise Gone(f"{self.name} ended", ended=True)
            self._buffer += chunk
            if len(self._buffer) > _MAX_REPLY_BYTES:
                raise Stop(VERDICT_FAIL, REASON_PROTOCOL, f"{self.name} wrote an oversized reply")
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            reply = json.loads(line)
        except ValueError:
            raise Stop(
                VERDICT_FAIL, REASON_PROTOCOL, f"{self.name} wrote something that is not a reply"
            ) from None
        if not isinstance(reply, dict):
            raise Stop(VERDICT_FAIL, REASON_PROTOCOL, f"{self.name} wrote something that is not a reply")
        return reply

    def call(self, op: str, timeout_s: float, **data: Any) -> tuple[dict[str, Any], float]:
        """Send a command and wait for its reply; returns the reply and the round trip in ms."""
        t0 = time.perf_counter()
        self.send(op, **data)
        reply = self.recv(timeout_s)
        return reply, (time.perf_counter() - t0) * 1e3


def fail_from_error(error: str, where: str) -> Stop:
    """A worker's ``"code: detail"`` error as the submission's ``fail``; unknown codes become
    ``kernel_exception`` (a worker cannot invent a reason code)."""
    code, _, rest = error.partition(": ")
    reason = code if code in WORKER_ERROR_CODES else REASON_KERNEL_EXCEPTION
    return Stop(VERDICT_FAIL, reason, f"{where}: {rest or error}")


def start_process(
    sandbox: Sandbox, module: str, scratch: Path, ro: dict[str, Path], env: dict[str, str] | None = None,
    fds: tuple[int, ...] = (),
) -> Channel:  # fmt: skip
    """Start ``python -m module REPLY_FD`` in ``sandbox``; ``fds`` are further descriptors it inherits."""
    reply_r, reply_w = os.pipe()
    try:
        process = sandbox.start(
            [sys.executable, "-I", "-B", "-m", module, str(reply_w)], scratch=scratch, ro=ro,
            env=env, pass_fds=(reply_w, *fds),
        )  # fmt: skip
    except BaseException:
        os.close(reply_r)
        raise
    finally:
        os.close(reply_w)
    return Channel(process, reply_r, module.rsplit(".", 1)[-1])
