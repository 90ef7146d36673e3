"""Typed, signed HTTP client for the Validator API (HTTP contract v1, DESIGN §4).

One method per route, each returning the wire model of `quasar.schemas`. Requests that change state
(and owner/validator routes) are signed with the wallet's hotkey for the API's hotkey, which the
client learns from ``GET /v1/info``; every send, retries included, carries a fresh nonce.

Retries: only idempotent calls — every GET, ``heartbeat`` and ``post_result`` (the API accepts an
identical result twice) — are retried, with exponential backoff and jitter, on connection failures
and on 429/502/503/504 (a 429's or 503's ``Retry-After`` is honoured). ``commit``, ``reveal``,
``claim_job``, ``create_round`` and ``finalize_round`` are sent once: repeating them could commit twice
or claim a second job, so the caller decides (a failed commit can be checked with
``get_submission_by_commitment``).

Errors: every refusal is an :class:`ApiError` carrying the API's stable ``code``, its ``detail`` and
``request_id``; the subclass says what a caller can do about it::

    ApiError
    ├── InvalidRequest      400/413/422  fix the request (e.g. commitment_mismatch, url_not_allowed)
    ├── AuthenticationError 401          signature, clock or key problem
    ├── PermissionDenied    403          the hotkey lacks the role or does not own the resource
    ├── NotFound            404          unknown round, submission or job
    ├── Conflict            409          the state does not allow it (yet): reveal too early, duplicate
    ├── RateLimited         429          slow down
    ├── ServerError         5xx          the API's trouble; try later
    ├── ApiUnavailable                   no answer at all (after retries, where allowed)
    └── InvalidResponse                  the API answered something this client cannot read

The package: `api.ValidatorApiClient` (the client) and `errors` (the hierarchy above, read from the
API's error bodies); every public name is importable from `quasar.client` itself.
"""

from __future__ import annotations

from quasar.client.api import CLIENT_VERSION_HEADER, ValidatorApiClient
from quasar.client.errors import (
    ApiError,
    ApiUnavailable,
    AuthenticationError,
    Conflict,
    InvalidRequest,
    InvalidResponse,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
)

__all__ = [
    "CLIENT_VERSION_HEADER",
    "ApiError",
    "ApiUnavailable",
    "AuthenticationError",
    "Conflict",
    "InvalidRequest",
    "InvalidResponse",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ServerError",
    "ValidatorApiClient",
]
