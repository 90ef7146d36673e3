"""The outermost ASGI layer: request ids, the body size limit, metrics and the access log.

The access log escapes what the caller chose (method, path) with `log_safe`, so a `%0a` in a path
cannot write a forged line; the request id is either ours or matched a strict pattern.

Pure ASGI (not BaseHTTPMiddleware) so the body limit can act on the receive channel: a declared
Content-Length over MAX_BODY_BYTES is refused before a byte of the body is read, and a chunked body
is cut off as soon as it passes the limit.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quasar.logging_setup import log_safe, request_id_var
from validator_api.errors import REQUEST_ID_HEADER, ApiError
from validator_api.metrics import Metrics

log = logging.getLogger("validator_api.access")

_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def _too_large_detail(limit: int) -> str:
    return f"the request body is larger than MAX_BODY_BYTES ({limit} bytes); send a smaller body"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = headers.get(REQUEST_ID_HEADER.lower(), "")
        request_id = given if _REQUEST_ID_OK.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        # Every line logged while serving this request (services, database) carries its id.
        id_token = request_id_var.set(request_id)
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                raw = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                raw.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": raw}
            await send(message)

        declared = headers.get("content-length")
        limit = self.max_body_bytes
        try:
            if declared is not None and declared.isdigit() and int(declared) > limit:
                await self._refuse_too_large(send_with_id, request_id)
                return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise ApiError(413, "body_too_large", _too_large_detail(limit))
                return message

            await self.app(scope, limited_receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            status = status_holder["status"]
            self.metrics.observe(scope["method"], template, status, elapsed)
            # The path is percent-decoded and the caller's: escaped so that it stays one line.
            log.info(
                "%s %s %s %.1fms request_id=%s",
                log_safe(scope["method"]),
                log_safe(scope.get("path", "")),
                status,
                elapsed * 1000,
                request_id,
            )
            request_id_var.reset(id_token)

    async def _refuse_too_large(self, send: Send, request_id: str) -> None:
        body: dict[str, Any] = {
            "code": "body_too_large",
            "detail": _too_large_detail(self.max_body_bytes),
            "request_id": request_id,
        }
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
