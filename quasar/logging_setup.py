"""One logging set-up for every process of the subnet: the API, miner, validator and inference server.

`configure_logging(settings, role)` installs one stderr handler on the root logger: plain text by
default, or with `LOG_FORMAT=json` one JSON object per line (`time`, `level`, `logger`, `message`,
`role`, and `request_id` while a request is being served, plus `exc_info` for exceptions), which log
shippers (Loki, CloudWatch, Render's log streams) parse without a custom pattern.

The request id travels in a context variable: the API's middleware sets it for each request
(`request_id_var.set(...)`), so every line logged while serving that request carries it, including
lines from services and the database layer that know nothing of HTTP.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["JsonFormatter", "TEXT_FORMAT", "configure_logging", "log_safe", "request_id_var"]

#: The id of the request being served in this context (None outside a request).
request_id_var: ContextVar[str | None] = ContextVar("quasar_request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Longest request-controlled string a log line carries; the rest is counted, not written.
LOG_VALUE_LIMIT = 512


def log_safe(value: object) -> str:
    """`value` fit for one log line: control and other unprintable characters (CR, LF, ESC, U+2028 ...)
    and backslashes escaped Python-style, and cut at LOG_VALUE_LIMIT characters.

    For every request-controlled string that is logged (path, headers): a decoded `%0a` in a path
    would otherwise start a forged line, and an escape sequence would rewrite the terminal.
    """
    text = str(value)
    cut = len(text) - LOG_VALUE_LIMIT
    if cut > 0:
        text = text[:LOG_VALUE_LIMIT]
    if not text.isprintable() or "\\" in text:
        text = "".join(ch if ch.isprintable() and ch != "\\" else _escaped(ch) for ch in text)
    return text + f"...(+{cut} chars)" if cut > 0 else text


_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(ch: str) -> str:
    if ch in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


# Attributes every LogRecord has; anything else was passed with `extra=` and goes into the JSON.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (text logs can show it with %(request_id)s)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; values that are not JSON types are written as their str()."""

    def __init__(self, role: str | None = None) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.role:
            entry["role"] = self.role
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key != "request_id" and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        # default=str: an `extra=` value of any type must never make logging itself fail.
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(
    settings: Any, role: str, *, stream: TextIO | None = None, force: bool = False
) -> logging.Handler | None:
    """Install the subnet's stderr handler on the root logger, once per process.

    `settings` needs `log_format` ("text" or "json") and `log_level`; `role` ("api", "miner",
    "validator", "inference") goes into every JSON line. A second call is a no-op unless `force`,
    which replaces our handler (tests that switch formats). Handlers others installed are kept.
    Returns the handler installed, or None when nothing changed.
    """
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_quasar_logging", False)]
    if ours and not force:
        return None
    for handler in ours:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._quasar_logging = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(role))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(str(settings.log_level).upper())
    # One line per outgoing HTTP request (heartbeats, polls) drowns a role's own story.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    return handler
