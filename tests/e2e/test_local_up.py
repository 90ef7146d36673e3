"""`quasar local up --once` (what `make demo` runs) on a fresh directory: dev chain, hotkeys, API."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_local_up_once_brings_the_subnet_up_and_stops_it(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUASAR_", "DATABASE_URL", "SUBTENSOR"))}
    proc = subprocess.run(
        [sys.executable, "-m", "quasar.cli", "local", "up", "--once", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "local subnet is up" in proc.stderr
    # State is kept under the current directory, and the owner took uid 0 (the burn uid).
    assert (tmp_path / ".quasar" / "devchain.sqlite").is_file()
    assert (tmp_path / ".quasar" / "validator_api.db").is_file()
    assert "owner" in proc.stderr and " 0 " in proc.stderr
    # Every process it started is gone: nothing listens on the port any more.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
