"""How the suite shares the machine when it runs in parallel (``make test`` runs pytest-xdist's
``pytest -n 2 --dist loadscope --no-loadscope-reorder``: a module's tests stay on one worker, in file
order, so module fixtures such as API servers and shared evaluations start once; the whole suite took
471 s this way against 1,342 s in one process, on 2 cores).

* Each xdist worker is pinned to a CPU of its own, and so is everything it starts (API servers,
  miners, validators, every sandboxed evaluation process: the affinity is inherited). PyTorch sizes
  its thread pool from the CPUs a process may use, so a sandboxed worker computes with one thread:
  the CPU evaluations' tensors are small, and two OpenMP threads on two busy cores cost more than
  they gain (an honest evaluation measured 16 s unpinned, 10.5 s on one CPU; the plain-loop kernel
  28 s and 11 s). Pinned, the two workers do not slow each other's tests.
* A test marked ``exclusive`` runs with no other test beside it, as in a serial run: the ones whose
  result depends on the machine being otherwise quiet (a tie must score 1.0, a padded call must be
  charged) or that count processes per user (a fork bomb capped by RLIMIT_NPROC alone counts every
  sandboxed process of the unprivileged user on the machine). The other worker finishes the test it
  is running and waits.

Without xdist (``pytest`` alone) nothing here does anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ... in an xdist worker; else None


def pytest_configure(config: pytest.Config) -> None:
    if _WORKER is not None:
        _pin_to_one_cpu(_WORKER)


def _pin_to_one_cpu(worker: str) -> None:
    """Pin this worker (and so its children) to CPU number ``index`` of those it may use, when
    there are at least as many CPUs as workers. Runs before the tests import torch."""
    cpus = sorted(os.sched_getaffinity(0))
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if count <= len(cpus):
        os.sched_setaffinity(0, {cpus[int(worker.removeprefix("gw")) % len(cpus)]})


class _MachineShare:
    """A readers-writer lock across the workers of one run (two ``flock`` files): every test holds
    it shared, an ``exclusive`` test holds it alone. A waiting exclusive test holds the gate, so no
    new test starts beside it while it waits for the running ones to finish."""

    def __init__(self, run_id: str) -> None:
        base = Path(tempfile.gettempdir()) / f"quasar-pytest-{run_id}"
        self._gate: IO[bytes] = open(f"{base}.gate", "ab")  # noqa: SIM115 - held for the session
        self._share: IO[bytes] = open(f"{base}.share", "ab")  # noqa: SIM115 - held for the session

    @contextlib.contextmanager
    def hold(self, exclusive: bool) -> Iterator[None]:
        fcntl.flock(self._gate, fcntl.LOCK_EX)
        if exclusive:
            try:
                fcntl.flock(self._share, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(self._share, fcntl.LOCK_UN)
            finally:
                fcntl.flock(self._gate, fcntl.LOCK_UN)
            return
        try:
            fcntl.flock(self._share, fcntl.LOCK_SH)
        finally:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(self._share, fcntl.LOCK_UN)


_share: _MachineShare | None = None


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Around a test's setup, call and teardown (so around the module fixtures it starts too), and
    outside pytest-timeout's clock: waiting for the other worker is not the test's time."""
    global _share
    if _WORKER is None:
        yield
        return
    if _share is None:
        _share = _MachineShare(os.environ["PYTEST_XDIST_TESTRUNUID"])
    with _share.hold(item.get_closest_marker("exclusive") is not None):
        yield
