"""Fault tests: the API under load loses nothing when PostgreSQL crashes, when it is SIGKILLed
mid-request, or when the chain goes away and comes back.

Each runs on a throwaway PostgreSQL cluster (tests/integration/pgcluster.py: initdb into a temp dir
as the `postgres` user, a free loopback port), never the shared server; they skip with the reason
when that is impossible (not root, binaries missing). The validator killed mid-job and the miner
killed between commit and reveal are tested in tests/e2e/test_validator_crash.py and
tests/integration/test_miner_flow.py / test_miner_recovery.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.integration.conftest import (
    FROZEN_BLOCK_TIME,
    ApiServer,
    build_settings,
    free_port,
    launch,
    new_keypair,
    reveal_material,
    signed_request,
)
from tests.integration.pgcluster import ThrowawayCluster, unavailable_reason
from validator_api.migrate import upgrade

pytestmark = pytest.mark.timeout(180)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayCluster]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    made = ThrowawayCluster()
    made.start()
    yield made
    made.remove()


def fresh_database(cluster: ThrowawayCluster) -> str:
    return cluster.create_database(f"quasar_fault_{uuid.uuid4().hex[:10]}")


def rows_by_hash(api_url: str) -> dict[str, list[int]]:
    from validator_api.db import make_engine

    engine = make_engine(api_url)
    try:
        with engine.connect() as conn:
            found: dict[str, list[int]] = {}
            for sub_id, digest in conn.execute(text("SELECT id, commitment_hash FROM submissions")):
                found.setdefault(digest, []).append(sub_id)
    finally:
        engine.dispose()
    return found


class CommitLoad:
    """Threads that send signed commits (fresh hashes) until stopped, recording every answer."""

    def __init__(self, base_url: str, receiver: str, miners: list[Any], threads: int = 4) -> None:
        self.base_url, self.receiver, self.miners = base_url, receiver, miners
        self.acked: dict[str, int] = {}  # hash -> submission id from a 201
        self.unacked: set[str] = set()  # sent, answer lost or refused as unavailable
        self.statuses: list[int] = []
        self.unavailable_codes: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, index: int) -> None:
        miner = self.miners[index % len(self.miners)]
        while not self._stop.is_set():
            digest = reveal_material()[0]
            try:
                answer = signed_request(
                    self.base_url,
                    miner,
                    "POST",
                    "/v1/submissions/commit",
                    {"commitment_hash": digest},
                    receiver=self.receiver,
                    timeout=15,
                )
            except httpx.TransportError:
                with self._lock:
                    self.unacked.add(digest)
                    self.statuses.append(-1)
                time.sleep(0.05)
                continue
            with self._lock:
                self.statuses.append(answer.status_code)
                if answer.status_code == 201:
                    self.acked[digest] = answer.json()["submission_id"]
                else:
                    self.unacked.add(digest)
                    if answer.status_code == 503:
                        self.unavailable_codes.add(answer.json()["code"])
                        time.sleep(0.05)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def wait_for_acks(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        start = len(self.acked)
        while len(self.acked) < start + count:
            assert time.monotonic() < deadline, f"no progress: statuses {sorted(set(self.statuses))}"
            time.sleep(0.02)


def retry_unacked(api_call: Any, digests: set[str]) -> None:
    """A miner whose answer was lost retries the same hash: recorded once either way."""
    for digest in digests:
        answer = api_call(digest)
        assert answer.status_code in (201, 409), answer.text
        if answer.status_code == 409:
            assert answer.json()["code"] == "duplicate_commitment"


def assert_each_once(database_url: str, acked: dict[str, int], sent: set[str]) -> dict[str, list[int]]:
    found = rows_by_hash(database_url)
    for digest, sub_id in acked.items():
        assert found.get(digest) == [sub_id], f"acknowledged commit {sub_id} lost or duplicated"
    assert all(len(ids) == 1 for ids in found.values()), "duplicate rows"
    assert set(found) <= sent, "a row nobody sent"
    return found


def test_postgres_crash_under_load(cluster: ThrowawayCluster, tmp_path: Path) -> None:
    api: ApiServer = launch("postgresql", tmp_path / "api", None, database_url=fresh_database(cluster))
    try:
        api.new_round()
        load = CommitLoad(api.base_url, api.api_hotkey, api.miners)
        load.start()
        load.wait_for_acks(20)
        cluster.stop("immediate")  # a crash: no checkpoint, the restart replays the WAL
        down = time.monotonic()
        ready_while_down = api.get("/ready")
        reads_while_down = api.get("/v1/rounds/current")
        while time.monotonic() - down < 2.0:
            time.sleep(0.1)
        cluster.start()
        # Recovers by itself: no restart of the API, no operator action.
        deadline = time.monotonic() + 30
        while api.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, "the API did not recover within 30 s of the database"
            time.sleep(0.2)
        recovered_after = time.monotonic() - down
        load.wait_for_acks(20)
        load.stop()

        assert ready_while_down.status_code == 503
        assert ready_while_down.json()["code"] == "database_unavailable"
        assert reads_while_down.status_code == 503
        assert reads_while_down.json()["code"] == "database_unavailable"
        assert 503 in load.statuses, "no request saw the outage"
        assert set(load.statuses) <= {201, 503}, f"unexpected answers: {sorted(set(load.statuses))}"
        assert load.unavailable_codes <= {"database_unavailable"}

        def again(digest: str) -> httpx.Response:
            return api.call(api.miner, "POST", "/v1/submissions/commit", {"commitment_hash": digest})

        retry_unacked(again, load.unacked)
        found = assert_each_once(api.database_url, load.acked, set(load.acked) | load.unacked)
        assert len(found) == len(load.acked) + len(load.unacked)
        print(
            f"\npostgres crash: {len(load.statuses)} commits, {len(load.acked)} acknowledged, "
            f"{load.statuses.count(503)} answered 503, ready again {recovered_after:.1f} s after the crash"
        )
    finally:
        api.stop()
        if not cluster.is_running():
            cluster.start()


def start_uvicorn(env: dict[str, str], port: int, cwd: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
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
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=open(cwd / "api.log", "ab"),  # noqa: SIM115 - the child owns it
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, (cwd / "api.log").read_text()[-2000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "uvicorn did not become ready in 60 s"
        time.sleep(0.2)


def test_api_sigkilled_mid_request(cluster: ThrowawayCluster, tmp_path: Path) -> None:
    from quasar.chain.devchain import DevChain

    home = tmp_path / "home"
    home.mkdir()
    database_url = fresh_database(cluster)
    upgrade(database_url)
    settings = build_settings(home, database_url)
    assert settings.dev_chain_path is not None and settings.wallet_path is not None
    chain = DevChain(settings.dev_chain_path, netuid=settings.netuid, block_time_seconds=FROZEN_BLOCK_TIME)
    burn, owner = new_keypair(), new_keypair()
    miners = [new_keypair() for _ in range(4)]
    chain.register(burn.ss58_address, "owner")
    chain.register(owner.ss58_address, "owner")
    for miner in miners:
        chain.register(miner.ss58_address, "miner")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("QUASAR_", "DATABASE_", "SUBTENSOR_"))},
        "PYTHONPATH": str(REPO),
        "QUASAR_HOME": str(home),
        "SUBTENSOR_NETWORK": "embedded",
        "DATABASE_URL": database_url,
        "DEV_CHAIN_PATH": str(settings.dev_chain_path),
        "WALLET_PATH": str(settings.wallet_path),
        "BLOCK_TIME_SECONDS": str(FROZEN_BLOCK_TIME),
        "AUTO_ROUNDS": "false",
        "OWNER_HOTKEY": owner.ss58_address,
        "RATE_LIMIT_PER_IP_PER_MINUTE": "0",
        "RATE_LIMIT_PER_HOTKEY_PER_MINUTE": "0",
        "MAX_COMMITS_PER_ROUND": "0",
        "LOG_LEVEL": "WARNING",
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_uvicorn(env, port, home)
    try:
        receiver = httpx.get(base + "/v1/info", timeout=10).json()["api_hotkey"]
        opened = signed_request(
            base, owner, "POST", "/v1/rounds", {"duration_blocks": 100_000}, receiver=receiver
        )
        assert opened.status_code == 201, opened.text
        load = CommitLoad(base, receiver, miners, threads=6)
        load.start()
        load.wait_for_acks(30)
        os.kill(process.pid, signal.SIGKILL)  # mid-burst: requests are in flight
        process.wait(timeout=10)
        time.sleep(0.5)
        load.stop()
        assert -1 in load.statuses, "no request was cut off by the kill"

        process = start_uvicorn(env, port, home)
        # The same API hotkey after the restart (kept in the wallet dir), so clients need no change.
        assert httpx.get(base + "/v1/info", timeout=10).json()["api_hotkey"] == receiver

        def again(digest: str) -> httpx.Response:
            body = {"commitment_hash": digest}
            return signed_request(base, miners[0], "POST", "/v1/submissions/commit", body, receiver=receiver)

        assert set(load.statuses) <= {201, -1}, f"unexpected answers: {sorted(set(load.statuses))}"
        retry_unacked(again, load.unacked)
        found = assert_each_once(database_url, load.acked, set(load.acked) | load.unacked)
        assert len(found) == len(load.acked) + len(load.unacked)
        print(
            f"\nAPI SIGKILL: {len(load.acked)} acknowledged commits all present once; "
            f"{len(load.unacked)} cut off, each recorded once after the retry"
        )
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)


def test_chain_lost_and_back_under_load(cluster: ThrowawayCluster, tmp_path: Path) -> None:
    """Extends test_api_service's chain-down test: the chain goes away while serving, then returns."""
    api: ApiServer = launch("postgresql", tmp_path / "api", None, database_url=fresh_database(cluster))
    try:
        api.new_round()
        path = api.settings.dev_chain_path
        assert path is not None
        moved = path.with_name(path.name + ".away")
        path.rename(moved)
        path.mkdir()  # a directory is no usable chain file: every chain call fails
        try:
            time.sleep(1.5)  # past the metagraph cache and the retry interval
            health = api.get("/health")
            assert health.status_code == 200 and health.json()["chain"] == "unavailable"
            answers = [
                api.call(
                    api.miner, "POST", "/v1/submissions/commit", {"commitment_hash": reveal_material()[0]}
                )
                for _ in range(5)
            ]
            for answer in answers:  # a clear refusal (or an estimated block), never a crash
                assert answer.status_code in (201, 503), answer.text
                if answer.status_code == 503:
                    assert answer.json()["code"] == "chain_unavailable"
                    assert "retry" in answer.json()["detail"]
            assert api.get("/v1/rounds/current").status_code == 200
        finally:
            path.rmdir()
            moved.rename(path)
        deadline = time.monotonic() + 30
        while api.get("/health").json()["chain"] != "ok":
            assert time.monotonic() < deadline, "the API did not notice the chain was back within 30 s"
            time.sleep(0.2)
        api.commit(api.miner)
    finally:
        api.stop()
