"""The Validator API client's errors: one class per thing a caller can do about a refusal, built from the
API's ``{"code", "detail", "request_id"}`` error body (see `quasar.client` for the hierarchy)."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

import httpx
from pydantic import ValidationError

from quasar.schemas import ErrorBody

REQUEST_ID_HEADER = "X-Request-ID"


class ApiError(Exception):
    """The API refused a request, or could not be reached. ``code`` is the API's stable error code."""

    def __init__(self, status: int | None, code: str, detail: str, request_id: str | None = None) -> None:
        super().__init__(f"{code}: {detail}" + (f" (HTTP {status})" if status else ""))
        self.status = status
        self.code = code
        self.detail = detail
        self.request_id = request_id


class InvalidRequest(ApiError):
    """400, 413 or 422: the request itself is wrong (bad body, wrong salt, URL outside the policy)."""


class AuthenticationError(ApiError):
    """401: unsigned, badly signed, stale (check the clock) or replayed."""


class PermissionDenied(ApiError):
    """403: the hotkey is not registered, lacks the role, or does not own the resource."""


class NotFound(ApiError):
    """404: no such round, submission or job."""


class Conflict(ApiError):
    """409: the current state does not allow this (too early, too late, already done, duplicate)."""


class RateLimited(ApiError):
    """429 after the allowed retries; ``retry_after`` is the server's hint in seconds, if any."""

    retry_after: float | None = None


class ServerError(ApiError):
    """5xx: the API's own trouble (database or chain unavailable, internal error); try again later."""


class ApiUnavailable(ApiError):
    """No answer: connection refused, reset or timed out (after retries, for idempotent calls)."""


class InvalidResponse(ApiError):
    """The API answered with something that is not the contract's shape (wrong URL or version?)."""


_STATUS_ERRORS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    422: InvalidRequest,
    429: RateLimited,
}


def error_from_response(response: httpx.Response) -> ApiError:
    """The typed error for a non-2xx response, reading the API's ``{"code", "detail", "request_id"}``."""
    status = response.status_code
    request_id = response.headers.get(REQUEST_ID_HEADER)
    try:
        body = ErrorBody.model_validate(response.json())
        code, detail, request_id = body.code, body.detail, body.request_id or request_id
    except (ValueError, ValidationError):
        # Not the API's error shape: a proxy, a load balancer or the wrong URL answered.
        code = f"http_{status}"
        detail = response.text.strip()[:300] or response.reason_phrase or "no detail"
    cls = _STATUS_ERRORS.get(status) or (ServerError if status >= 500 else ApiError)
    error = cls(status, code, detail, request_id)
    if isinstance(error, RateLimited):
        error.retry_after = retry_after_seconds(response)
    return error


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if there is one."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
