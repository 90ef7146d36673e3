"""Keeps the lease on a claimed job alive while it is evaluated: heartbeats on a background thread.

A lease lapses after JOB_LEASE_SECONDS without a heartbeat, and the job goes back to the queue. That
is what makes a crashed validator harmless, and also why a live one must keep beating: an
evaluation can take longer than one lease. The keeper beats every third of the lease, so two lost
heartbeats in a row are still survived. When the API answers that the job is no longer ours (it
lapsed and another validator took it), ``lost`` is set: the result will be refused, and the worker
can say so instead of retrying.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from quasar.client import ApiError, NotFound, PermissionDenied, ValidatorApiClient
from quasar.client import Conflict as ApiConflict

log = logging.getLogger("quasar.validator.lease")


class LeaseKeeper:
    """``with LeaseKeeper(client, job_id, lease_seconds): evaluate(...)`` — heartbeats until the block ends."""

    def __init__(
        self, client: ValidatorApiClient, job_id: int, lease_seconds: float, *, interval: float | None = None
    ) -> None:
        self.client = client
        self.job_id = job_id
        self.interval = interval if interval is not None else max(lease_seconds / 3.0, 0.5)
        self.lost = threading.Event()
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.client.heartbeat(self.job_id)
                self.beats += 1
            except (PermissionDenied, ApiConflict, NotFound) as exc:
                log.warning(
                    "job %s: the lease is lost (%s); its result will not be accepted", self.job_id, exc
                )
                self.lost.set()
                return
            except ApiError as exc:
                # The API is away for a moment; the lease still has two more beats' worth of time.
                log.warning("job %s: heartbeat failed (%s); trying again", self.job_id, exc)
