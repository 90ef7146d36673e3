#!/usr/bin/env python3
"""Load test of the Validator API: signed writes from many hotkeys and public reads (wrk).

It sets everything up itself on loopback only: a throwaway PostgreSQL cluster (as in the fault
tests; or --database-url), a DevChain with --miners miner and --validators validator hotkeys, and
`uvicorn validator_api.app:app --workers N` with the abuse limits off for the run. Then, in order:

1. commit: --commits signed commitments, spread over the miner hotkeys;
2. reveal: each of them revealed by its miner (the chain is advanced past the reveal block);
3. claim: validators claim the jobs the reveals made until none is left (204);
4. reads: wrk for --read-seconds per public route.

Request counts and durations are bounded by the arguments. It prints one line per route (requests,
errors, requests/s, p50, p99) and writes them as JSON with --json. Run as root (the throwaway
cluster runs as `postgres`):

    .venv/bin/python scripts/loadtest.py --workers 2 --commits 3000 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from bittensor import http_auth
from bittensor.sp_core import Keypair
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from quasar import commitment  # noqa: E402
from quasar.chain.devchain import DevChain  # noqa: E402
from validator_api.migrate import upgrade  # noqa: E402

FROZEN_BLOCK_TIME = 1_000_000.0  # blocks move only when the driver advances them
# The leaderboard goes last: uncached, its backlog would still hold the threads during the next route.
READ_ROUTES = ("/v1/rounds/current", "/v1/weights", "/v1/info", "/v1/rounds", "/v1/leaderboard")


def new_key() -> Keypair:
    return Keypair.create_from_seed(os.urandom(32), crypto_type=1)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def signed_request(key: Keypair, target: str, body: Any, receiver: str, port: int) -> bytes:
    """One pre-signed POST, as the exact bytes sent on a kept-alive HTTP/1.1 connection."""
    raw = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
    headers = http_auth.sign(key, method="POST", path=target, body=raw, receiver_ss58=receiver)
    headers.update({"host": f"127.0.0.1:{port}", "content-length": str(len(raw))})
    if raw:
        headers["content-type"] = "application/json"
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"POST {target} HTTP/1.1\r\n{head}\r\n".encode() + raw


async def _send_all(
    port: int, requests: list[bytes], connections: int
) -> tuple[list[float], dict[str, int], float]:
    """Each request once over ``connections`` kept-alive connections: latencies, statuses, wall time.

    A bare asyncio HTTP/1.1 client: the API's cost is what is measured, so the driver must cost
    little (httpx took most of a core at 90 requests/s on this 2-core machine).
    """
    pending = list(reversed(requests))
    latencies: list[float] = []
    statuses: dict[str, int] = {}

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while pending:
                request = pending.pop()
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                latencies.append(time.perf_counter() - started)
                status = head[9:12].decode()
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return latencies, statuses, time.perf_counter() - started


def replay(port: int, route: str, requests: list[bytes], connections: int) -> dict[str, Any]:
    """Send each pre-signed request once; requests/s, p50 and p99 of the phase."""
    latencies, statuses, seconds = asyncio.run(_send_all(port, requests, connections))
    ordered = sorted(latencies)
    return {
        "route": route,
        "requests": len(requests),
        "statuses": statuses,
        "rps": round(len(requests) / seconds, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
    }


def wrk(base_url: str, route: str, seconds: int, connections: int, threads: int) -> dict[str, Any]:
    done = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", base_url + route],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    )
    text = done.stdout

    def latency(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 2)

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket_errors = re.search(r"Socket errors: (.*)", text)
    return {
        "route": f"GET {route}",
        "requests": int(total.group(1)) if total else 0,
        "errors": {"non-2xx": int(non2xx.group(1))} if non2xx else {},
        "socket_errors": socket_errors.group(1) if socket_errors else "",
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
    }


def start_server(
    args: argparse.Namespace, home: Path, database_url: str, owner: Keypair
) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("QUASAR_", "DATABASE_", "SUBTENSOR_"))},
        "PYTHONPATH": str(REPO),
        "QUASAR_HOME": str(home),
        "SUBTENSOR_NETWORK": "embedded",
        "DATABASE_URL": database_url,
        "DEV_CHAIN_PATH": str(home / "devchain.sqlite"),
        "WALLET_PATH": str(home / "wallets"),
        "BLOCK_TIME_SECONDS": str(FROZEN_BLOCK_TIME),
        "AUTO_ROUNDS": "false",
        "OWNER_HOTKEY": owner.ss58_address,
        "BLOCKS_UNTIL_REVEAL": "5",
        "REVEAL_WINDOW_BLOCKS": "1000000",
        "EVALUATIONS_PER_SUBMISSION": "1",
        "ENABLE_LOGIT_VERIFICATION": "false",
        "METAGRAPH_TTL_SECONDS": "60",
        # The abuse limits are raised (off) for the run: one address, few hotkeys, many requests.
        "RATE_LIMIT_PER_IP_PER_MINUTE": "0",
        # Requests are signed before the phase starts: a wider freshness window covers a slow phase.
        "AUTH_MAX_AGE_SECONDS": "300",
        "RATE_LIMIT_PER_HOTKEY_PER_MINUTE": "0",
        "MAX_COMMITS_PER_ROUND": "0",
        "LOG_LEVEL": "WARNING",
        "PUBLIC_CACHE_SECONDS": str(args.public_cache_seconds),
        **({"API_THREADS": str(args.api_threads)} if args.api_threads else {}),
    }
    command = [
        sys.executable, "-m", "uvicorn", "validator_api.app:app",
        "--host", "127.0.0.1", "--port", str(args.port), "--workers", str(args.workers),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        env=env,
        cwd=home,
        stderr=open(home / "api.log", "ab"),  # noqa: SIM115 - the child owns it
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the API exited during start-up; see {home / 'api.log'}")
        try:
            if httpx.get(f"http://127.0.0.1:{args.port}/ready", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the API did not become ready within 60 s")
        time.sleep(0.3)


def drive_writes(
    args: argparse.Namespace, receiver: str, chain: DevChain, keys: dict[str, Any], database_url: str,
) -> list[dict[str, Any]]:  # fmt: skip
    """Commits, then their reveals, then job claims; each phase signed up front, then sent."""
    miners: list[Keypair] = keys["miners"]
    validators: list[Keypair] = keys["validators"]
    material = []
    for i in range(args.commits):
        payload = {
            "repo_url": "https://github.com/miner/flash-linear-attention",
            "commit_sha": os.urandom(20).hex(),
        }
        salt = commitment.new_salt()
        material.append(
            (miners[i % len(miners)], commitment.commitment_hash(salt, payload), salt.hex(), payload)
        )
    rows = []
    port = args.port
    commits = [
        signed_request(key, "/v1/submissions/commit", {"commitment_hash": digest}, receiver, port)
        for key, digest, _, _ in material
    ]
    rows.append(replay(port, "POST /v1/submissions/commit", commits, args.concurrency))
    chain.advance(6)
    time.sleep(1.0)

    engine = create_engine(database_url)
    with engine.connect() as connection:
        ids = dict(connection.execute(text("SELECT commitment_hash, id FROM submissions")).all())
    engine.dispose()
    reveals = [
        signed_request(
            key, f"/v1/submissions/{ids[digest]}/reveal", {"salt": salt, "payload": payload}, receiver, port
        )
        for key, digest, salt, payload in material
        if digest in ids
    ]
    rows.append(replay(port, "POST /v1/submissions/{id}/reveal", reveals, args.concurrency))
    claims = [
        signed_request(validators[i % len(validators)], "/v1/jobs/claim", None, receiver, port)
        for i in range(args.commits)
    ]
    rows.append(replay(port, "POST /v1/jobs/claim", claims, args.concurrency))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--miners", type=int, default=200, help="registered miner hotkeys")
    parser.add_argument("--validators", type=int, default=50, help="registered validator hotkeys")
    parser.add_argument(
        "--commits", type=int, default=2000, help="signed commits (then as many reveals and claims)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="signed requests in flight")
    parser.add_argument("--read-seconds", type=int, default=10, help="wrk duration per public route")
    parser.add_argument("--read-connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--read-threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: a throwaway cluster)")
    parser.add_argument("--port", type=int, default=0, help="API port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--json", type=Path, help="write the per-route figures here")
    parser.add_argument(
        "--public-cache-seconds", type=float, default=0.0, help="PUBLIC_CACHE_SECONDS of the API"
    )
    parser.add_argument("--api-threads", type=int, help="API_THREADS of the API (default: its own)")
    parser.add_argument(
        "--read-route",
        dest="read_routes",
        action="append",
        help="a public route to load (repeatable; default: all)",
    )
    parser.add_argument("--skip-reads", action="store_true", help="signed writes only")
    args = parser.parse_args()
    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so the server and the throwaway cluster go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.port = args.port or free_port()
    args.commits = max(1, min(args.commits, 100_000))
    args.read_seconds = max(1, min(args.read_seconds, 120))

    cluster = None
    database_url = args.database_url
    if database_url is None:
        from tests.integration.pgcluster import ThrowawayCluster, unavailable_reason

        reason = unavailable_reason()
        if reason is not None:
            raise SystemExit(f"cannot make a throwaway PostgreSQL cluster ({reason}); pass --database-url")
        cluster = ThrowawayCluster()
        cluster.start()
        database_url = cluster.create_database(f"quasar_load_{uuid.uuid4().hex[:8]}")
    home = Path(tempfile.mkdtemp(prefix="quasar-load-"))
    process = None
    try:
        upgrade(database_url)
        chain = DevChain(home / "devchain.sqlite", netuid=24, block_time_seconds=FROZEN_BLOCK_TIME)
        owner = new_key()
        keys = {
            "miners": [new_key() for _ in range(args.miners)],
            "validators": [new_key() for _ in range(args.validators)],
        }
        chain.register(new_key().ss58_address, "owner")  # uid 0: the burn uid
        chain.register(owner.ss58_address, "owner")
        for key in keys["miners"]:
            chain.register(key.ss58_address, "miner")
        for key in keys["validators"]:
            chain.register(key.ss58_address, "validator", stake=1000.0)
        process = start_server(args, home, database_url, owner)
        base = f"http://127.0.0.1:{args.port}"
        receiver = httpx.get(base + "/v1/info", timeout=10).json()["api_hotkey"]
        raw = json.dumps({"duration_blocks": 1_000_000}).encode()
        headers = {"content-type": "application/json"}
        headers.update(
            http_auth.sign(owner, method="POST", path="/v1/rounds", body=raw, receiver_ss58=receiver)
        )
        opened = httpx.post(base + "/v1/rounds", content=raw, headers=headers, timeout=30)
        if opened.status_code != 201:
            raise SystemExit(f"could not open a round: {opened.status_code} {opened.text}")

        rows = drive_writes(args, receiver, chain, keys, database_url)
        if not args.skip_reads:
            if shutil.which("wrk") is None:
                raise SystemExit("wrk is not installed (apt-get install -y wrk), or pass --skip-reads")
            for route in args.read_routes or READ_ROUTES:
                rows.append(wrk(base, route, args.read_seconds, args.read_connections, args.read_threads))
        print(f"{'route':38} {'requests':>9} {'errors':>14} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
        for row in rows:
            errors = ",".join(f"{k}:{v}" for k, v in row.get("errors", {}).items()) or "0"
            if "statuses" in row:
                errors = ",".join(f"{k}:{v}" for k, v in row["statuses"].items())
            print(
                f"{row['route']:38} {row['requests']:>9} {errors:>14} {row['rps']:>9} "
                f"{row['p50_ms']:>8} {row['p99_ms']:>8}"
            )
        if args.json:
            args.json.write_text(
                json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2)
            )
    finally:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        if cluster is not None:
            cluster.remove()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
