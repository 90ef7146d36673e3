"""The miner's memory on disk: the pending submission (salt, payload, phase), results, bench cache.

Commit–reveal only works if the salt and payload survive a crash between commit and reveal, and a
restart must never commit the same pending state twice. So every step of a submission is written here
*before* the network call that depends on it and again after it answers, with an atomic replace
(temp file, fsync, rename, fsync of the directory): a reader sees the old state or the new one, never
half a file. The file is mode 0600 because the salt is secret until the reveal.

One miner per state directory: :class:`StateStore` holds an exclusive ``flock`` on ``miner.lock``
for its lifetime (the kernel drops it when the process dies, even by SIGKILL).

Phases of a pending submission::

    prepared ─▶ committing ─▶ committed ─▶ pushed ─▶ revealed ─▶ (history: scored, rejected, ...)
       │             │             └──────────────────▶ expired (reveal window missed)
       └─ replaced while nothing was sent; "committing" means a commit may have reached the API
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from quasar.schemas import RevealPayload

Phase = Literal["prepared", "committing", "committed", "pushed", "revealed"]
STATE_FILE = "state.json"
LOCK_FILE = "miner.lock"
STATE_VERSION = 1
#: How many finished submissions and bench results are kept (oldest dropped first).
HISTORY_LIMIT = 200
BENCH_CACHE_LIMIT = 500


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class BenchResult(BaseModel):
    """What the bench said about one kernel tree (the subset the miner decides on)."""

    tree_hash: str
    verdict: str
    reason: str | None = None
    detail: str | None = None
    median_ms: float | None = None
    baseline_ms: float | None = None
    speedup: float | None = None
    max_rel_error: float | None = None
    device: str | None = None
    measured_at: str = Field(default_factory=utcnow)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def summary(self) -> str:
        if not self.passed:
            return f"{self.verdict} ({self.reason}): {self.detail or ''}".strip()
        speed = "-" if self.speedup is None else f"{self.speedup:.3f}x"
        median = "-" if self.median_ms is None else f"{self.median_ms:.3f} ms"
        return f"pass, {median}, speed-up {speed}"


#: The reveal payload, exactly as hashed into the commitment: the API's own wire shape, which owns
#: the hash (``payload.commitment(salt)``) and the mapping that is revealed (``payload.wire()``).
Payload = RevealPayload


class PendingSubmission(BaseModel):
    phase: Phase
    salt_hex: str
    payload: Payload
    commitment_hash: str
    tree_hash: str
    speedup: float | None = None
    submission_id: int | None = None
    round_id: int | None = None
    commit_block: int | None = None
    reveal_block: int | None = None
    reveal_deadline_block: int | None = None
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)


class FinishedSubmission(BaseModel):
    submission_id: int | None
    tree_hash: str
    commit_sha: str
    status: str
    score: float | None = None
    reason: str | None = None
    finished_at: str = Field(default_factory=utcnow)


class MinerState(BaseModel):
    version: int = STATE_VERSION
    pending: PendingSubmission | None = None
    #: Revealed submissions whose evaluation is still followed (submission ids).
    following: list[int] = Field(default_factory=list)
    history: list[FinishedSubmission] = Field(default_factory=list)
    #: Kernel tree hashes already revealed (or in flight): never submitted again.
    submitted_trees: list[str] = Field(default_factory=list)
    bench_cache: dict[str, BenchResult] = Field(default_factory=dict)

    def remember_bench(self, result: BenchResult) -> None:
        self.bench_cache[result.tree_hash] = result
        while len(self.bench_cache) > BENCH_CACHE_LIMIT:
            self.bench_cache.pop(next(iter(self.bench_cache)))

    def finish(self, record: FinishedSubmission) -> None:
        self.history.append(record)
        del self.history[:-HISTORY_LIMIT]


class StateLocked(RuntimeError):
    """Another miner process holds this state directory."""


class StateStore:
    """Loads and atomically saves :class:`MinerState` in ``directory``; holds the directory's lock."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        self.path = self.directory / STATE_FILE
        self._lock_fd: int | None = None

    def acquire(self) -> None:
        """Take the exclusive lock (raises StateLocked when another miner runs on this directory)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateLocked(
                f"another miner is running with the state directory {self.directory}; stop it first, or "
                "give this one its own MINER_STATE_DIR (two miners sharing state could commit twice)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> StateStore:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def load(self) -> MinerState:
        if not self.path.exists():
            return MinerState()
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise RuntimeError(
                f"cannot read the miner state {self.path}: {exc}. It holds the salt of any pending "
                "commitment: repair or move it aside (a fresh state forgets pending reveals)"
            ) from exc
        return MinerState.model_validate(data)

    def save(self, state: MinerState) -> None:
        """Replace the state file atomically (and durably: the directory entry is fsynced too)."""
        if state.pending is not None:
            state.pending.updated_at = utcnow()
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = state.model_dump_json(indent=2).encode()
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
