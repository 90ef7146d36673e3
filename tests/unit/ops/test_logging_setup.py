"""LOG_FORMAT=json: one JSON object per line, request id included, for every role's set-up."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from quasar.config import Settings
from quasar.logging_setup import LOG_VALUE_LIMIT, configure_logging, log_safe, request_id_var


@pytest.fixture
def clean_root() -> Iterator[None]:
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize("role", ["api", "miner", "validator", "inference"])
def test_json_lines_parse_and_carry_role_and_request_id(role: str, clean_root: None) -> None:
    stream = io.StringIO()
    settings = SimpleNamespace(log_format="json", log_level="INFO")
    assert configure_logging(settings, role, stream=stream, force=True) is not None
    assert configure_logging(settings, role, stream=stream) is None  # idempotent
    log = logging.getLogger(f"quasar.test.{role}")
    log.info("plain %s", "message", extra={"job_id": 7, "odd": object()})
    token = request_id_var.set("req-123")
    try:
        log.warning('quote " and newline\n inside')
    finally:
        request_id_var.reset(token)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second, third = _lines(stream)
    assert first["message"] == "plain message" and first["role"] == role and first["level"] == "INFO"
    assert first["job_id"] == 7 and "request_id" not in first and first["time"].endswith("+00:00")
    assert second["request_id"] == "req-123" and second["message"] == 'quote " and newline\n inside'
    assert "ValueError: boom" in third["exc_info"]


def test_text_format_stays_the_default(clean_root: None) -> None:
    stream = io.StringIO()
    configure_logging(Settings(_env_file=None), "miner", stream=stream, force=True)
    logging.getLogger("quasar.test").warning("hello")
    assert "WARNING quasar.test: hello" in stream.getvalue()


def test_api_access_log_lines_carry_the_request_id(tmp_path, clean_root: None) -> None:  # type: ignore[no-untyped-def]
    from validator_api.app import create_app
    from validator_api.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'api.db'}"
    upgrade(url)
    settings = Settings(_env_file=None, quasar_home=tmp_path, database_url=url, log_format="json")
    stream = io.StringIO()
    configure_logging(settings, "api", stream=stream, force=True)
    with TestClient(create_app(settings, upkeep=False)) as client:
        answer = client.get("/v1/rounds/999", headers={"X-Request-ID": "trace-abc"})
    assert answer.status_code == 404 and answer.json()["request_id"] == "trace-abc"
    access = [e for e in _lines(stream) if e["logger"] == "validator_api.access"]
    assert any(e["request_id"] == "trace-abc" and "/v1/rounds/999" in e["message"] for e in access)


def test_log_safe_keeps_one_line_and_says_what_was_there() -> None:
    assert log_safe("/v1/rounds/7") == "/v1/rounds/7"
    assert log_safe("/a\r\nINFO forged") == "/a\\r\\nINFO forged"
    assert log_safe("/\x1b[2K\x00\x7f\x85\u2028\u202e") == "/\\x1b[2K\\x00\\x7f\\x85\\u2028\\u202e"
    # A literal backslash is escaped too, so a path cannot pass "\n" off as an escaped newline.
    assert log_safe("/a\\nb") == "/a\\\\nb"
    assert log_safe("/é/ß") == "/é/ß"  # printable text is left alone
    long = log_safe("x" * 10_000)
    assert long.startswith("x" * LOG_VALUE_LIMIT) and long.endswith(f"(+{10_000 - LOG_VALUE_LIMIT} chars)")
