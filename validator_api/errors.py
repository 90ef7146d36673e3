"""Every error the API returns: JSON `{"code", "detail", "request_id"}` with a stable code, never a trace.

Routes and services raise `ApiError(status, code, detail)`; the handlers here turn it, request
validation failures, database outages and anything unexpected into that one shape. `ApiError` is an
HTTPException so it can also be raised from inside the ASGI receive channel (body size limit).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from quasar.chain import ChainUnavailable
from quasar.schemas import ErrorBody

log = logging.getLogger("validator_api.errors")

REQUEST_ID_HEADER = "X-Request-ID"


class ApiError(StarletteHTTPException):
    """A refusal with a stable `code` and a `detail` that says what to do."""

    def __init__(self, status_code: int, code: str, detail: str) -> None:
        super().__init__(status_code=status_code, detail=detail)
        self.code = code


def not_found(code: str, what: str) -> ApiError:
    return ApiError(404, code, what)


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_response(request: Request, status: int, code: str, detail: str) -> JSONResponse:
    request_id = request_id_of(request)
    body = ErrorBody(code=code, detail=detail, request_id=request_id).model_dump()
    headers = {REQUEST_ID_HEADER: request_id} if request_id else None
    return JSONResponse(body, status_code=status, headers=headers)


# Documented in OpenAPI on every route: each entry is one of the error bodies that route can return.
def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Malformed JSON body or a salt/payload that does not reproduce the commitment",
        401: "Unsigned, badly signed, stale, replayed or otherwise unauthenticated request",
        403: "The caller lacks the role or does not own the resource",
        404: "Unknown round, submission or job",
        409: "The request conflicts with the current state",
        413: "Body larger than MAX_BODY_BYTES",
        422: "Invalid request (code invalid_request) or a URL outside the policy (url_not_allowed)",
        429: "Rate limit reached (code rate_limited); retry after the Retry-After header's seconds",
        503: "Database or chain unavailable; retry later",
    }
    return {s: {"model": ErrorBody, "description": descriptions[s]} for s in statuses}


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


def _describe_validation(exc: RequestValidationError) -> tuple[str, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (first.get("ctx") or {}).get("error", "JSON decode error")
        return "malformed_json", f"the request body is not valid JSON ({reason}); send a JSON object"
    parts = []
    for error in errors[:5]:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body",)]
        where = ".".join(loc) or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more")
    return "invalid_request", "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        response = error_response(request, exc.status_code, exc.code, str(exc.detail))
        if exc.headers:  # e.g. Retry-After on 429 rate_limited
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}; see /docs for the API"
        response = error_response(request, exc.status_code, code, detail)
        if exc.headers:  # e.g. Allow on 405 (RFC 9110 requires it)
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        code, detail = _describe_validation(exc)
        return error_response(request, 400 if code == "malformed_json" else 422, code, detail)

    @app.exception_handler(ChainUnavailable)
    async def _chain_down(request: Request, exc: ChainUnavailable) -> JSONResponse:
        log.warning("chain unavailable: %s (request %s)", exc, request_id_of(request))
        return error_response(
            request, 503, "chain_unavailable", "the chain cannot be reached right now; retry in a few seconds"
        )

    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s (request %s)", type(exc).__name__, request_id_of(request))
        return error_response(
            request, 503, "database_unavailable", "the database is unavailable right now; retry shortly"
        )

    app.add_exception_handler(OperationalError, _db_down)
    app.add_exception_handler(PoolTimeout, _db_down)

    @app.exception_handler(DBAPIError)
    async def _db_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return await _db_down(request, exc)
        log.error("database error (request %s)", request_id_of(request), exc_info=exc)
        return error_response(request, 500, "internal_error", "internal error; the request id is in the logs")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error (request %s)", request_id_of(request), exc_info=exc)
        return error_response(request, 500, "internal_error", "internal error; the request id is in the logs")
