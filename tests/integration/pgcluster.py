"""A throwaway PostgreSQL cluster for fault tests and load runs, never the shared one on 5432.

`ThrowawayCluster` runs `initdb` into a fresh temp dir owned by the `postgres` user and starts it
with `pg_ctl` on a free loopback port (socket in that dir too), all as `postgres` through
`runuser`, because PostgreSQL refuses to run as root. Stopping it with `mode="immediate"` is a
crash as far as the server is concerned: the next start replays the WAL. `unavailable_reason()`
says why a test must skip (not root, no postgres user, binaries missing).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

PG_BIN = Path(os.environ.get("QUASAR_PG_BIN", "/usr/lib/postgresql/15/bin"))


def unavailable_reason() -> str | None:
    """Why a throwaway cluster cannot be made here, or None when it can."""
    if os.geteuid() != 0:
        return "throwaway PostgreSQL clusters are made as root (runuser -u postgres); not root"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no `postgres` system user to run a throwaway cluster as"
    for tool in ("initdb", "pg_ctl"):
        if not (PG_BIN / tool).exists():
            return f"{PG_BIN / tool} is missing (install postgresql-15 or set QUASAR_PG_BIN)"
    if shutil.which("runuser") is None:
        return "runuser (util-linux) is missing"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayCluster:
    """One private cluster: `start()`, `stop(mode)`, `create_database(name)`, `remove()`."""

    def __init__(self) -> None:
        user = pwd.getpwnam("postgres")
        # Not under pytest's tmp dirs: those are 0700 root and the postgres user could not enter.
        self.root = Path(tempfile.mkdtemp(prefix="quasar-pg-"))
        os.chown(self.root, user.pw_uid, user.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {done.stderr.strip()}\n{log}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def remove(self) -> None:
        if self.is_running():
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                time.sleep(1)
        shutil.rmtree(self.root, ignore_errors=True)
