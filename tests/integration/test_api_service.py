"""Service behaviour: health and readiness through outages, start-up refusal, OpenAPI, errors, metrics,
request ids, and the background upkeep (auto rounds, finalize at end block, expiry, nonce pruning)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from quasar.config import Settings
from tests.integration.conftest import ApiServer, free_port, reveal_material
from validator_api.auth import DatabaseNonceStore
from validator_api.db import make_engine
from validator_api.migrate import upgrade

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[2]


def test_health_degraded_while_chain_unreachable(start_api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A directory is not a usable dev chain file: every chain call fails.
    api: ApiServer = start_api("sqlite", dev_chain_path=tmp_path)
    for _ in range(2):
        health = api.get("/health")
        assert health.status_code == 200
        assert health.json() == {
            "status": "degraded",
            "database": "ok",
            "chain": "unavailable",
            "block": None,
        }
    assert api.get("/ready").status_code == 200
    assert api.get("/v1/info").json()["current_block"] is None
    refused = api.call(api.miner, "POST", "/v1/submissions/commit", {"commitment_hash": reveal_material()[0]})
    assert refused.status_code == 503 and refused.json()["code"] == "chain_unavailable"
    assert api.get("/v1/rounds").status_code == 200  # reads that need no chain keep working


def test_ready_503_while_database_unreachable(start_api) -> None:  # type: ignore[no-untyped-def]
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    api: ApiServer = start_api("postgresql", database_url=closed, migrate=False)
    ready = api.get("/ready")
    assert ready.status_code == 503 and ready.json()["code"] == "database_unavailable"
    health = api.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    assert health.json()["database"] == "unavailable"
    rounds = api.get("/v1/rounds")
    assert rounds.status_code == 503 and rounds.json()["code"] == "database_unavailable"


def test_ready_503_after_database_dropped(start_api, pg_databases) -> None:  # type: ignore[no-untyped-def]
    api: ApiServer = start_api("postgresql")
    assert api.get("/ready").status_code == 200
    api.engine.dispose()
    pg_databases.drop(api.database_url)
    ready = api.get("/ready")
    assert ready.status_code == 503 and ready.json()["code"] == "database_unavailable"
    assert api.get("/health").json()["database"] == "unavailable"
    assert api.get("/v1/rounds/current").json()["code"] == "database_unavailable"


def test_refuses_to_start_on_unmigrated_database(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "QUASAR_HOME": str(tmp_path / "home"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite'}",
        "SUBTENSOR_NETWORK": "embedded",
    }
    port = free_port()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "validator_api.app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "quasar db upgrade" in proc.stderr


def test_refuses_to_start_on_unmigrated_postgres(start_api) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError, match="exited during start-up"):
        start_api("postgresql", migrate=False)


def test_openapi_documents_every_route(api: ApiServer) -> None:
    spec = api.get("/openapi.json").json()
    expected = {
        ("get", "/health"),
        ("get", "/ready"),
        ("get", "/metrics"),
        ("get", "/v1/info"),
        ("get", "/v1/rounds"),
        ("post", "/v1/rounds"),
        ("get", "/v1/rounds/current"),
        ("get", "/v1/rounds/{round_id}"),
        ("post", "/v1/rounds/{round_id}/finalize"),
        ("post", "/v1/submissions/commit"),
        ("post", "/v1/submissions/{submission_id}/reveal"),
        ("get", "/v1/submissions/{submission_id}"),
        ("post", "/v1/jobs/claim"),
        ("post", "/v1/jobs/{job_id}/heartbeat"),
        ("post", "/v1/jobs/{job_id}/result"),
        ("get", "/v1/leaderboard"),
        ("get", "/v1/weights"),
        ("get", "/get_weights"),
        ("get", "/get_current_round"),
    }
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert expected <= documented, expected - documented
    assert "ErrorBody" in spec["components"]["schemas"]
    commit = spec["paths"]["/v1/submissions/commit"]["post"]
    assert commit["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("CommitRequest")
    assert commit["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "CommitResponse"
    )
    for status in ("401", "403", "409", "413", "422"):
        assert commit["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith(
            "ErrorBody"
        )


BAD_INPUTS: list[tuple[str, str, bytes | None, dict[str, str]]] = [
    ("GET", "/v1/rounds/abc", None, {}),
    ("GET", "/v1/rounds?limit=100000", None, {}),
    ("GET", "/v1/rounds?offset=-1", None, {}),
    ("GET", "/v1/rounds?offset=100000000000000000000000000", None, {}),
    ("GET", "/v1/leaderboard?round_id=x", None, {}),
    ("GET", "/v1/submissions/99999999999999999999999", None, {}),
    ("DELETE", "/v1/rounds", None, {}),
    ("GET", "/no/such/route", None, {}),
    ("POST", "/v1/submissions/commit", b"\xff\xfe\x00garbage", {"content-type": "application/json"}),
    ("POST", "/v1/submissions/commit", b"[1, 2, 3]", {"content-type": "application/json"}),
    ("POST", "/v1/submissions/commit", b"null", {"content-type": "application/json"}),
    (
        "POST",
        "/v1/submissions/commit",
        b'{"commitment_hash": 1e999999}',
        {"content-type": "application/json"},
    ),
    ("POST", "/v1/submissions/commit", b"{}", {"content-type": "text/plain"}),
    (
        "POST",
        "/v1/jobs/claim",
        b"",
        {
            "X-Bittensor-Version": "1",
            "X-Bittensor-Hotkey": "nope",
            "X-Bittensor-Nonce": "9" * 200,
            "X-Bittensor-Signature": "zz",
        },
    ),
    (
        "POST",
        "/v1/jobs/claim",
        b"",
        {
            "X-Bittensor-Version": "1",
            "X-Bittensor-Hotkey": "nope",
            "X-Bittensor-Nonce": str(time.time_ns()),
            "X-Bittensor-Signature": "0x00",
            "X-Bittensor-Receiver": "x",
        },
    ),
    ("POST", "/v1/jobs/abc/result", b"{}", {"content-type": "application/json"}),
    ("POST", "/v1/rounds", b'{"duration_blocks": "many"}', {"content-type": "application/json"}),
]


@pytest.mark.parametrize("method,target,body,headers", BAD_INPUTS)
def test_no_stack_trace_on_bad_input(
    api: ApiServer, method: str, target: str, body: bytes | None, headers: dict[str, str]
) -> None:
    response = httpx.request(method, api.base_url + target, content=body, headers=headers, timeout=30)
    assert 400 <= response.status_code < 500, response.text
    payload = response.json()
    assert set(payload) == {"code", "detail", "request_id"} and payload["code"] and payload["detail"]
    assert "Traceback" not in response.text and 'File "' not in response.text


def test_request_ids_and_metrics(api: ApiServer) -> None:
    given = api.get("/v1/submissions/424242", headers={"X-Request-ID": "trace-123"})
    assert given.headers["x-request-id"] == "trace-123" and given.json()["request_id"] == "trace-123"
    made = api.get("/v1/rounds", headers={"X-Request-ID": "bad id with spaces"})
    assert made.headers["x-request-id"] != "bad id with spaces" and len(made.headers["x-request-id"]) == 32
    metrics = api.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert 'route="/v1/submissions/{submission_id}",status="404"' in metrics.text
    assert "quasar_api_request_duration_seconds_bucket" in metrics.text


def test_upkeep_opens_finalizes_and_expires(start_api) -> None:  # type: ignore[no-untyped-def]
    # One-second blocks, so the upkeep ticks every second.
    api: ApiServer = start_api(
        "sqlite",
        upkeep=True,
        auto_rounds=True,
        round_blocks=30,
        reveal_window_blocks=3,
        block_time_seconds=1.0,
    )

    def wait_for(condition, what: str, seconds: float = 15.0):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    first = wait_for(lambda: api.get("/v1/rounds/current").json().get("id"), "the first round")
    committed, _, _ = api.commit(api.miner)
    api.advance(40)  # past the round's end and the reveal deadline
    wait_for(
        lambda: api.get(f"/v1/rounds/{first}").json()["status"] == "finalized",
        "finalize at the end block",
        20,
    )
    second = wait_for(lambda: api.get("/v1/rounds/current").json().get("id"), "the next round", 20)
    assert second != first
    state = api.get(f"/v1/submissions/{committed['submission_id']}").json()
    assert state["status"] == "expired" and state["reason"] == "not_revealed"
    assert api.get("/v1/weights").json()["round_id"] == first


def test_nonce_store_prunes_past_the_window(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'n.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    store = DatabaseNonceStore(engine, max_age=30, allowed_skew=5)
    assert store.retention >= 35

    def record(nonce_ns: int) -> bool:
        with engine.begin() as connection:
            return store.on(connection).check_and_store("hk", nonce_ns)

    now = time.time_ns()
    assert record(now - int(100e9))
    assert record(now)
    assert not record(now)
    assert store.prune(now) == 1
    assert not record(now)
    engine.dispose()


def test_settings_accept_render_postgres_urls() -> None:
    settings = Settings(_env_file=None, database_url="postgres://u@h:5432/d")  # type: ignore[call-arg]
    assert settings.database_url == "postgresql+psycopg://u@h:5432/d"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_build_exactly_the_models(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # Every column the code maps (results.sandbox, submissions.sandbox of 0003 included) is made by
    # the migrations, and nothing else: Alembic's own comparison finds no difference.
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    from validator_api.models import Base

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    else:
        url = request.getfixturevalue("pg_databases").create()
    upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
