"""A started sandboxed command and how it ended: draining its output, freezing and thawing its
whole process tree, killing it, and the ``SandboxResult``. Used by the evaluation parent."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import cgroup as cgroups
from .walls import WALLS_FAILED

if TYPE_CHECKING:
    from .sandbox_layout import SandboxLimits
    from .sandbox_probe import Mechanisms

log = logging.getLogger(__name__)


@dataclass
class SandboxResult:
    """How a sandboxed run ended. ``output`` is the tail of stdout+stderr (at most ``output_bytes``)."""

    returncode: int | None
    wall_s: float
    timed_out: bool
    output: bytes
    output_truncated: bool
    output_total_bytes: int
    memory_exceeded: bool = False
    pids_exceeded: bool = False
    scratch_exceeded: bool = False
    peak_memory_mb: float | None = None
    mechanisms: str = ""
    warnings: list[str] = field(default_factory=list)

    #: The signal that ended the command. Both wrappers report it as exit status 128 + signal (their
    #: pid 1 cannot die of the command's signal), which is read back here.
    killed_by_signal: int | None = None
    #: The wrapper said it could not build the walls. Only meaningful before any untrusted code ran:
    #: a command can print the same words.
    walls_failed: bool = False


class OutputTail(threading.Thread):
    """Drain a pipe forever (so the child never blocks on it) and keep only its last ``cap`` bytes."""

    def __init__(self, stream: int, cap: int) -> None:
        super().__init__(daemon=True)
        self._fd = stream
        self._cap = cap
        self._buffer = bytearray()
        self.total = 0

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            self.total += len(chunk)
            self._buffer += chunk
            if len(self._buffer) > 2 * self._cap:
                del self._buffer[: len(self._buffer) - self._cap]
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def tail(self) -> bytes:
        return bytes(self._buffer[-self._cap :])


def _dir_bytes(path: Path, stop_after: int) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
        if total > stop_after:
            break
    return total


class FreezeFailed(Exception):
    """The processes of a run could not all be stopped."""


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (or gone): state ``T``, ``t``, ``Z`` or ``X``."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                # "pid (comm) state ...": comm may hold spaces and parentheses; the state follows the last ')'.
                state = f.read().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state not in "TtZX":
            return False
    return True


class SandboxProcess:
    """A running sandboxed command: its stdin, its deadline, and :meth:`finish` to end and clean up."""

    def __init__(
        self, proc: subprocess.Popen[bytes], reader: OutputTail, run_cgroup: cgroups.RunCgroup | None,
        scratch: Path, limits: SandboxLimits, wall_s: float, mechanisms: Mechanisms,
        new_root: Path | None = None,
    ) -> None:  # fmt: skip
        self.proc = proc
        self._new_root = new_root
        self._reader = reader
        self._cgroup = run_cgroup
        self._scratch = scratch
        self._limits = limits
        self._mechanisms = mechanisms
        self.started = time.monotonic()
        self.deadline = self.started + wall_s
        self.timed_out = False
        self.scratch_exceeded = False
        self._finished: SandboxResult | None = None
        self._stopped: set[int] = set()
        self._watch_stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish(kill=True)

    def _watch(self) -> None:
        # The deadline and the scratch size are enforced here, whatever the caller is blocked on.
        while not self._watch_stop.wait(0.5):
            if self.proc.poll() is not None:
                return
            if time.monotonic() > self.deadline:
                self.timed_out = True
                self.kill()
                return
            if _dir_bytes(self._scratch, self._limits.scratch_bytes) > self._limits.scratch_bytes:
                self.scratch_exceeded = True
                self.kill()
                return

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def kill(self) -> None:
        """SIGKILL the whole tree: the wrapper's process group (its PID namespace's init is in it, and
        every process of the namespace dies with that), and every process in the run's cgroup."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._cgroup is not None:
            self._cgroup.kill_all()

    def processes(self) -> set[int]:
        """Every process of the run as the host sees it: the wrapper and all its descendants (in a PID
        namespace an orphan is adopted by the namespace's init, so it stays among them), and every
        member of the run's cgroup."""
        found = {self.proc.pid}
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{pid}/task"):
                    with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                        for child in map(int, f.read().split()):
                            if child not in found:
                                found.add(child)
                                todo.append(child)
        if self._cgroup is not None:
            found |= self._cgroup.pids()
        return found

    def freeze(self, timeout_s: float = 5.0) -> None:
        """Stop every process of the run (SIGSTOP, which no process can catch or ignore) and return
        once every thread of each one is stopped; a process forked meanwhile is found on a later pass.
        Raises :class:`FreezeFailed` if the run cannot be stopped within ``timeout_s``."""
        stopped: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while True:
            current = self.processes()
            for pid in current - stopped:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGSTOP)
            stopped |= current
            self._stopped = stopped
            if all(_all_threads_stopped(pid) for pid in current) and self.processes() <= stopped:
                return
            if time.monotonic() > deadline:
                raise FreezeFailed(
                    f"the run's {len(current)} processes did not all stop in {timeout_s:.0f} s"
                )

    def thaw(self) -> None:
        """Let every process stopped by :meth:`freeze` run again."""
        for pid in self._stopped | self.processes():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGCONT)
        self._stopped = set()

    def finish(self, *, kill: bool = False, wait_s: float | None = None) -> SandboxResult:
        """Wait for the command (up to its deadline, or ``wait_s``), kill what is left, clean up."""
        if self._finished is not None:
            return self._finished
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        if not kill:
            timeout = self.remaining() if wait_s is None else min(wait_s, self.remaining())
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                if wait_s is None:
                    self.timed_out = True
        self._watch_stop.set()
        # Whatever the command left running (a daemonised child, a forked helper) dies with it.
        self.kill()
        self.proc.wait()
        wall = time.monotonic() - self.started
        self._reader.join(timeout=5)
        returncode = self.proc.returncode
        namespaces = self._mechanisms.namespaces
        sig = -returncode if returncode < 0 else None
        if namespaces != "none" and 128 < returncode < 128 + signal.NSIG:
            sig = returncode - 128
        tail = self._reader.tail()
        walls_failed = (
            namespaces == "unshare" and returncode == WALLS_FAILED and b"sandbox walls: " in tail
        ) or (namespaces == "bwrap" and returncode == 1 and tail.lstrip().startswith(b"bwrap: "))
        if self._new_root is not None:
            with contextlib.suppress(OSError):
                self._new_root.rmdir()  # only ever a mount point inside the walls' namespace: empty here
        result = SandboxResult(
            returncode=returncode, wall_s=wall, timed_out=self.timed_out, killed_by_signal=sig,
            walls_failed=walls_failed, output=tail, output_truncated=self._reader.total > self._limits.output_bytes,
            output_total_bytes=self._reader.total, scratch_exceeded=self.scratch_exceeded,
            mechanisms=self._mechanisms.describe(), warnings=list(self._mechanisms.warnings),
        )  # fmt: skip
        if self._cgroup is not None:
            result.memory_exceeded = self._cgroup.memory_exceeded()
            result.pids_exceeded = self._cgroup.pids_exceeded()
            result.peak_memory_mb = self._cgroup.peak_memory_mb()
            self._cgroup.remove()
        self._finished = result
        return result
