"""Shared fixtures of the integration tests: real Validator API servers on loopback ports.

Everything is real: the API runs in uvicorn on a free 127.0.0.1 port (in a thread of the test
process), against a migrated SQLite file in a temp dir or a fresh PostgreSQL database on
127.0.0.1:5432 (made for the test and dropped at the end of the session), with a DevChain file in
the temp dir and real sr25519 keys. Nothing of ours is mocked.

Main entry points (reuse them for client tests):

* ``api`` — a module-scoped server, parametrised over ``sqlite`` and ``postgresql``, with owner,
  miners and validators registered (see :class:`ApiServer`). Rounds are opened by the tests
  (AUTO_ROUNDS off) and blocks move only when a test calls ``api.advance(n)``.
* ``start_api(backend, **settings_overrides)`` — a factory fixture for a server with other settings
  (dev mode off, short leases, an unusable chain...); stopped at the end of the test.
* :func:`signed_request` / :meth:`ApiServer.call` — send a raw request signed with
  ``bittensor.http_auth.sign``; :meth:`ApiServer.snapshot` — every row of every table but the
  nonces, to assert that a refused request wrote nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from bittensor import http_auth
from bittensor.sp_core import Keypair
from sqlalchemy import create_engine, text

from quasar import commitment
from quasar.chain.devchain import DevChain
from quasar.config import Settings
from validator_api.app import create_app
from validator_api.db import make_engine
from validator_api.migrate import upgrade

PG_HOST = os.environ.get("QUASAR_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("QUASAR_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("QUASAR_TEST_PG_USER", "postgres")
PG_ADMIN_URL = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"
BACKENDS = ("sqlite", "postgresql")
TABLES = ("rounds", "submissions", "jobs", "job_assignments", "results")

# Blocks advance only when a test says so: one block every ~11 days of wall clock.
FROZEN_BLOCK_TIME = 1_000_000.0


# --- keys and signing ---------------------------------------------------------------------------
def new_keypair(*, ed25519: bool = False) -> Keypair:
    """A fresh sr25519 (or, to test refusals, ed25519) keypair."""
    return Keypair.create_from_seed(os.urandom(32), crypto_type=0 if ed25519 else 1)


def encode_body(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


def signed_request(
    base_url: str,
    keypair: Keypair | None,
    method: str,
    target: str,
    body: Any = None,
    *,
    receiver: str | None,
    nonce_ns: int | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> httpx.Response:
    """Send one request whose btauth/1 headers come from ``bittensor.http_auth.sign``.

    ``target`` is the path with its query, ``body`` a JSON-able value or raw bytes, ``keypair`` None
    for an unsigned request.
    """
    raw = encode_body(body)
    sent = {"content-type": "application/json"} if raw else {}
    if keypair is not None:
        sent.update(
            http_auth.sign(
                keypair, method=method, path=target, body=raw, receiver_ss58=receiver, nonce_ns=nonce_ns
            )
        )
    sent.update(headers or {})
    return httpx.request(method, base_url + target, content=raw, headers=sent, timeout=timeout)


def reveal_material(
    repo_url: str = "https://github.com/miner/flash-linear-attention", **extra: Any
) -> tuple[str, str, dict[str, Any]]:
    """(commitment_hash, salt_hex, payload) for a fresh random commitment."""
    payload = {"repo_url": repo_url, "commit_sha": os.urandom(20).hex(), **extra}
    salt = commitment.new_salt()
    return commitment.commitment_hash(salt, payload), salt.hex(), payload


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- PostgreSQL ---------------------------------------------------------------------------------
_pg_reachable: bool | None = None


def postgres_reachable() -> bool:
    global _pg_reachable
    if _pg_reachable is None:
        try:
            engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            _pg_reachable = True
        except Exception:
            _pg_reachable = False
    return _pg_reachable


class PostgresDatabases:
    """Makes fresh ``quasar_test_<random>`` databases and drops them all at the end."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._admin = create_engine(
            PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )

    def create(self) -> str:
        name = f"quasar_test_{uuid.uuid4().hex[:12]}"
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.names.append(name)
        return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def drop_all(self) -> None:
        for name in self.names:
            with contextlib.suppress(Exception), self._admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._admin.dispose()


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PostgresDatabases]:
    """Session-wide maker of fresh PostgreSQL databases (skips when the server is unreachable)."""
    if not postgres_reachable():
        pytest.skip(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} (user {PG_USER}, trust auth)")
    databases = PostgresDatabases()
    yield databases
    databases.drop_all()


# --- servers ------------------------------------------------------------------------------------
@dataclass
class ApiServer:
    """A running Validator API with its chain, keys and database at hand.

    ``owner``, ``miners`` and ``validators`` are registered sr25519 keypairs; ``stranger`` is not
    registered. ``call(key, method, target, body)`` signs and sends a request.
    """

    backend: str
    settings: Settings
    base_url: str
    chain: DevChain
    owner: Keypair
    miners: list[Keypair]
    validators: list[Keypair]
    stranger: Keypair
    api_hotkey: str = ""
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _engine: Any = field(default=None, repr=False)

    @property
    def database_url(self) -> str:
        assert self.settings.database_url is not None
        return self.settings.database_url

    @property
    def miner(self) -> Keypair:
        return self.miners[0]

    @property
    def validator(self) -> Keypair:
        return self.validators[0]

    def call(
        self, key: Keypair | None, method: str, target: str, body: Any = None, **kwargs: Any
    ) -> httpx.Response:
        kwargs.setdefault("receiver", self.api_hotkey)
        return signed_request(self.base_url, key, method, target, body, **kwargs)

    def get(self, target: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.base_url + target, timeout=30, **kwargs)

    def advance(self, blocks: int) -> int:
        return self.chain.advance(blocks)

    def block(self) -> int:
        return self.chain.current_block()

    # --- database views -------------------------------------------------------------------------
    @property
    def engine(self) -> Any:
        if self._engine is None:
            self._engine = make_engine(self.database_url)
        return self._engine

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table except auth_nonces, to compare before/after a refusal."""
        with self.engine.connect() as conn:
            snap = {
                t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id"))] for t in TABLES
            }
            conn.rollback()
        return snap

    def nonce_count(self) -> int:
        with self.engine.connect() as conn:
            count = int(conn.execute(text("SELECT COUNT(*) FROM auth_nonces")).scalar_one())
            conn.rollback()
        return count

    # --- protocol steps (all through raw signed HTTP) ------------------------------------------
    def new_round(self, duration_blocks: int = 100_000) -> dict[str, Any]:
        """Finalize the open round, if any, and open a fresh one (as the owner)."""
        current = self.get("/v1/rounds/current")
        if current.status_code == 200:
            done = self.call(self.owner, "POST", f"/v1/rounds/{current.json()['id']}/finalize")
            assert done.status_code == 200, done.text
        created = self.call(self.owner, "POST", "/v1/rounds", {"duration_blocks": duration_blocks})
        assert created.status_code == 201, created.text
        return dict(created.json())

    def close_rounds(self) -> None:
        current = self.get("/v1/rounds/current")
        if current.status_code == 200:
            done = self.call(self.owner, "POST", f"/v1/rounds/{current.json()['id']}/finalize")
            assert done.status_code == 200, done.text

    def commit(
        self, miner: Keypair | None = None, **payload_extra: Any
    ) -> tuple[dict[str, Any], str, dict[str, Any]]:
        """Commit a fresh payload; returns (commit answer, salt hex, payload)."""
        digest, salt, payload = reveal_material(**payload_extra)
        response = self.call(
            miner or self.miner, "POST", "/v1/submissions/commit", {"commitment_hash": digest}
        )
        assert response.status_code == 201, response.text
        return dict(response.json()), salt, payload

    def commit_and_reveal(self, miner: Keypair | None = None, **payload_extra: Any) -> dict[str, Any]:
        """Commit, advance to the reveal block, reveal; returns the revealed submission."""
        miner = miner or self.miner
        committed, salt, payload = self.commit(miner, **payload_extra)
        self.advance(self.settings.blocks_until_reveal or 0)
        revealed = self.call(
            miner,
            "POST",
            f"/v1/submissions/{committed['submission_id']}/reveal",
            {"salt": salt, "payload": payload},
        )
        assert revealed.status_code == 200, revealed.text
        return dict(revealed.json())

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self._engine is not None:
            self._engine.dispose()


def build_settings(home: Path, database_url: str, **overrides: Any) -> Settings:
    """Settings for a test server in `home`: embedded chain, frozen blocks, no auto rounds."""
    values: dict[str, Any] = {
        "quasar_home": home,
        "subtensor_network": "embedded",
        "database_url": database_url,
        "block_time_seconds": FROZEN_BLOCK_TIME,
        "auto_rounds": False,
        "metagraph_ttl_seconds": 1.0,
        "chain_retry_seconds": 0.5,
        "enable_logit_verification": False,
        "evaluations_per_submission": 1,
        "blocks_until_reveal": 5,
        "reveal_window_blocks": 20,
        "log_level": "WARNING",
        # Tests hammer one server from one address; the abuse-limit tests turn these back on.
        "rate_limit_per_ip_per_minute": 0,
        "rate_limit_per_hotkey_per_minute": 0,
        "max_commits_per_round": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def serve(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    """Run `app` in uvicorn on 127.0.0.1:port in a daemon thread; returns once it accepts requests."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)

    def run() -> None:
        # A refused start-up ends in SystemExit inside the thread; the caller reports it instead.
        with contextlib.suppress(SystemExit):
            server.run()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the API server exited during start-up (see the log above)")
        if time.monotonic() > deadline:
            raise RuntimeError("the API server did not start within 30 s")
        time.sleep(0.02)
    return server, thread


def launch(
    backend: str,
    home: Path,
    pg: Callable[[], PostgresDatabases] | None,
    *,
    validators: int = 3,
    miners: int = 3,
    migrate: bool = True,
    upkeep: bool = False,
    database_url: str | None = None,
    **overrides: Any,
) -> ApiServer:
    """Make the database, register keys on a fresh DevChain, start the API; returns it running.

    The background upkeep (auto rounds, expiry, finalize at end block) is off unless `upkeep=True`,
    so that tests comparing database snapshots see only their own requests' writes.
    """
    home.mkdir(parents=True, exist_ok=True)
    if database_url is None:
        if backend == "sqlite":
            database_url = f"sqlite:///{home / 'api.sqlite'}"
        else:
            assert pg is not None
            database_url = pg().create()
    if migrate:
        upgrade(database_url)
    settings = build_settings(home, database_url, **overrides)
    assert settings.dev_chain_path is not None
    chain = DevChain(settings.dev_chain_path, netuid=settings.netuid, block_time_seconds=FROZEN_BLOCK_TIME)
    # uid 0 is the burn uid: registered first so the burn target is a real neuron.
    burn = new_keypair()
    owner, stranger = new_keypair(), new_keypair()
    miner_keys = [new_keypair() for _ in range(miners)]
    validator_keys = [new_keypair() for _ in range(validators)]
    with contextlib.suppress(Exception):  # an unusable chain path is the point of some tests
        chain.register(burn.ss58_address, "owner")
        chain.register(owner.ss58_address, "owner")
        for key in miner_keys:
            chain.register(key.ss58_address, "miner")
        for key in validator_keys:
            chain.register(key.ss58_address, "validator", stake=1000.0)
    server_settings = settings.model_copy(update={"owner_hotkey": owner.ss58_address})
    port = free_port()
    api = ApiServer(
        backend=backend,
        settings=server_settings,
        base_url=f"http://127.0.0.1:{port}",
        chain=chain,
        owner=owner,
        miners=miner_keys,
        validators=validator_keys,
        stranger=stranger,
    )
    api._server, api._thread = serve(create_app(server_settings, upkeep=upkeep), port)
    api.api_hotkey = httpx.get(api.base_url + "/v1/info", timeout=10).json()["api_hotkey"]
    return api


@pytest.fixture(scope="module", params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A running API per backend (module-scoped); PostgreSQL tests skip when it is unreachable."""
    backend = request.param
    pg = (lambda: request.getfixturevalue("pg_databases")) if backend == "postgresql" else None
    server = launch(backend, tmp_path_factory.mktemp(f"api-{backend}"), pg)
    yield server
    server.stop()


@pytest.fixture
def start_api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., ApiServer]]:
    """Factory: ``start_api(backend, **settings)`` starts a dedicated server, stopped after the test."""
    started: list[ApiServer] = []

    def start(backend: str = "sqlite", **overrides: Any) -> ApiServer:
        pg = (lambda: request.getfixturevalue("pg_databases")) if backend == "postgresql" else None
        server = launch(backend, tmp_path / f"api-{len(started)}", pg, **overrides)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
