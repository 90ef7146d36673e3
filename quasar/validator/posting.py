"""Posting results so that none is lost: spooled on disk first, posted with retries, idempotent.

The API accepts an identical result twice (it answers the first acceptance again), so a post whose
answer was lost is simply sent again. Before the first attempt the result is written to the spool
(``VALIDATOR_STATE_DIR/results/<job_id>.json``); it is removed once the API has it or has refused it
for good. A validator that crashed between finishing an evaluation and hearing back from the API
posts the spooled result at its next start: while the lease has not lapsed the job is still ours
and the result is accepted; after that the API refuses it and the job is evaluated again elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from quasar.client import (
    ApiError,
    ApiUnavailable,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    ValidatorApiClient,
)
from quasar.schemas import JobResult, JobResultAccepted

log = logging.getLogger("quasar.validator.posting")

PostStatus = Literal["accepted", "refused", "unavailable"]


@dataclass
class PostOutcome:
    status: PostStatus
    accepted: JobResultAccepted | None = None
    detail: str = ""


class ResultSpool:
    """Results not yet accepted by the API, one JSON file per job (written atomically)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, job_id: int) -> Path:
        return self.directory / f"{int(job_id)}.json"

    def save(self, job_id: int, result: JobResult) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(job_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(result.model_dump_json(exclude_none=True))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        tmp.replace(path)

    def remove(self, job_id: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(job_id).unlink()

    def pending(self) -> list[tuple[int, JobResult]]:
        """Spooled results, oldest job first; unreadable files are set aside, not retried forever."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(
            self.directory.glob("*.json"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1
        ):
            try:
                found.append((int(path.stem), JobResult.model_validate(json.loads(path.read_text()))))
            except (ValueError, OSError) as exc:
                log.warning("spooled result %s is unreadable (%s); moved aside", path, exc)
                with contextlib.suppress(OSError):
                    path.replace(path.with_suffix(".bad"))
        return found


def post_result(
    client: ValidatorApiClient,
    job_id: int,
    result: JobResult,
    *,
    spool: ResultSpool | None = None,
    stop: threading.Event | None = None,
    patience_s: float = 300.0,
    retry_s: float = 5.0,
) -> PostOutcome:
    """Post ``result`` for ``job_id`` until accepted, refused for good, or ``patience_s`` runs out.

    ``refused`` means the job is not ours any more (the lease lapsed and someone else took it, or it
    is finished) or the result itself is invalid: retrying cannot help, so it leaves the spool.
    ``unavailable`` leaves it spooled for the next attempt (or the next start).
    """
    stop = stop or threading.Event()
    if spool is not None:
        spool.save(job_id, result)
    deadline = time.monotonic() + patience_s
    while True:
        try:
            accepted = client.post_result(job_id, result)
        except (PermissionDenied, NotFound, Conflict, InvalidRequest) as exc:
            log.warning("job %s: result refused (%s); it is not retried", job_id, exc)
            if spool is not None:
                spool.remove(job_id)
            return PostOutcome("refused", detail=str(exc))
        except (ApiUnavailable, ServerError, RateLimited) as exc:
            # The client already retried a few times; keep trying for a while, the result is spooled.
            if time.monotonic() + retry_s > deadline or stop.is_set():
                log.warning("job %s: result not posted yet (%s); kept in the spool", job_id, exc)
                return PostOutcome("unavailable", detail=str(exc))
            log.info("job %s: API unavailable (%s); posting again in %.0fs", job_id, exc, retry_s)
            stop.wait(retry_s)
            continue
        except ApiError as exc:
            log.warning("job %s: result refused (%s)", job_id, exc)
            if spool is not None:
                spool.remove(job_id)
            return PostOutcome("refused", detail=str(exc))
        if spool is not None:
            spool.remove(job_id)
        return PostOutcome("accepted", accepted=accepted)


def flush_spool(
    client: ValidatorApiClient, spool: ResultSpool, *, stop: threading.Event | None = None
) -> int:
    """Post what an earlier run left in the spool; returns how many the API accepted."""
    accepted = 0
    for job_id, result in spool.pending():
        outcome = post_result(client, job_id, result, spool=spool, stop=stop, patience_s=0.0)
        if outcome.status == "accepted":
            accepted += 1
            log.info("job %s: result from an earlier run accepted", job_id)
    return accepted
