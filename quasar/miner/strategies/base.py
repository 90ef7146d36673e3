"""What every strategy shares: measuring a kernel tree, and keeping a change only when it is better.

A strategy edits ``fla/ops/quasar/`` in the workspace and calls :meth:`Context.try_change`. That
benches the files as they are on disk, in a snapshot, through the same harness validators use, and
commits them only if they pass every correctness case and are faster than the current HEAD by
MINER_MIN_IMPROVEMENT; otherwise it puts the files back (unless told to leave them, for the user's own
edits) and logs why. Results are cached by kernel tree hash in the miner state, so an unchanged kernel
is never benched twice, even across restarts.
"""

from __future__ import annotations

import io
import logging
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from quasar.miner.bench import BenchRunner
from quasar.miner.state import BenchResult, MinerState
from quasar.miner.workspace import Workspace

log = logging.getLogger("quasar.miner.strategy")

#: Only the package validators import is needed to bench a kernel.
SNAPSHOT_DIR = "fla"


@dataclass
class Outcome:
    kept: bool
    reason: str
    result: BenchResult | None = None
    commit: str | None = None


@dataclass
class Context:
    workspace: Workspace
    state: MinerState
    save: Callable[[], None]
    bench: BenchRunner
    stop: threading.Event
    min_improvement: float = 0.02

    # -- measuring --
    @contextmanager
    def snapshot(self, rev: str | None) -> Iterator[Path]:
        """A temp copy of ``fla/`` at ``rev`` (None: the working files), so a bench never sees later edits."""
        with tempfile.TemporaryDirectory(prefix="quasar-candidate-") as tmp:
            root = Path(tmp)
            if rev is None:
                shutil.copytree(
                    self.workspace.path / SNAPSHOT_DIR,
                    root / SNAPSHOT_DIR,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                    symlinks=True,
                )
            else:
                archive = self.workspace.git_bytes("archive", "--format=tar", rev, SNAPSHOT_DIR)
                with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                    tar.extractall(root, filter="data")
            yield root

    def measure(self, rev: str | None = "HEAD") -> BenchResult:
        """Bench result of the kernel at ``rev`` (None: the working files), from the cache when known."""
        tree = self.workspace.working_kernel_tree() if rev is None else self.workspace.kernel_tree(rev)
        cached = self.state.bench_cache.get(tree)
        if cached is not None and cached.verdict != "error":
            return cached
        with self.snapshot(rev) as root:
            result = self.bench.run(root, tree)
        if result.verdict != "error":  # the harness's own trouble is not the kernel's property
            self.state.remember_bench(result)
            self.save()
        return result

    def head(self) -> BenchResult:
        return self.measure("HEAD")

    # -- deciding --
    def compare(self, candidate: BenchResult, best: BenchResult) -> tuple[bool, str]:
        if not candidate.passed:
            return False, f"rejected by the bench: {candidate.summary()}"
        if not best.passed:
            return True, f"passes where the current kernel does not ({best.reason})"
        if candidate.speedup is not None and best.speedup is not None:
            new, old, unit = candidate.speedup, best.speedup, "speed-up"
        elif candidate.median_ms and best.median_ms:
            new, old, unit = 1.0 / candidate.median_ms, 1.0 / best.median_ms, "1/ms"
        else:
            return False, "the bench reported no timing to compare"
        needed = old * (1.0 + self.min_improvement)
        if new >= needed:
            return True, f"faster: {unit} {new:.4g} vs {old:.4g}"
        return False, f"not faster enough: {unit} {new:.4g} vs {old:.4g} (needs {needed:.4g})"

    def try_change(self, description: str, *, discard: bool = True) -> Outcome:
        """Bench the working files; commit them if correct and faster than HEAD, else put them back."""
        if not self.workspace.kernel_dirty():
            return Outcome(False, "no change to the kernel")
        best = self.head()
        if self.stop.is_set():
            return self._drop(discard, Outcome(False, "stopped"))
        candidate = self.measure(None)
        if candidate.verdict == "error":
            log.warning(
                "candidate %r: the bench itself failed (%s); not judged", description, candidate.detail
            )
            return self._drop(discard, Outcome(False, f"bench error: {candidate.detail}", candidate))
        keep, why = self.compare(candidate, best)
        if not keep:
            log.info("discarded %s: %s", description, why)
            return self._drop(discard, Outcome(False, why, candidate))
        sha = self.workspace.commit_kernel(f"{description}\n\n{candidate.summary()}")
        log.info("kept %s as %s: %s", description, sha[:12], why)
        return Outcome(True, why, candidate, sha)

    def _drop(self, discard: bool, outcome: Outcome) -> Outcome:
        if discard:
            self.workspace.discard_kernel_changes()
        return outcome


class Strategy(Protocol):
    name: str

    def improve(self, ctx: Context) -> list[Outcome]:
        """Try to make HEAD's kernel faster; returns what was tried (kept ones are committed)."""
        ...
