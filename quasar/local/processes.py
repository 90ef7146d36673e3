"""The children of `quasar local up`: each in its own process group, waited for, and always stopped with it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


class DemoError(RuntimeError):
    """The local round could not complete; the message says what happened and where the logs are."""


def stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the child's whole process group, then SIGKILL what is left after ``grace`` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # Grandchildren (sandboxes, benches) may outlive a leader that exited: the group goes in any case.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextmanager
def managed(cmd: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start a child in its own process group and always stop the whole group afterwards."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop_group(proc)


def log_tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def wait_healthy(
    url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 60.0, path: str = "/ready"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(
                f"{url} exited with code {proc.returncode}; its log ends with:\n{log_tail(log_path)}"
            )
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise DemoError(f"{url} did not become ready within {timeout:.0f}s; see {log_path}")


def wait_for(what: str, check: Callable[[], T | None], timeout: float, *, watch: Sequence[Any] = ()) -> T:
    """Poll ``check`` until it returns something; a watched child that dies ends the wait with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        for name, proc, log_path in watch:
            if proc.poll() is not None and proc.returncode != 0:
                raise DemoError(f"the {name} exited with code {proc.returncode} while waiting for {what}:\n"
                                f"{log_tail(log_path)}")  # fmt: skip
        time.sleep(0.5)
    raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether the API could listen on 127.0.0.1:`port` now.

    SO_REUSEADDR, as uvicorn binds: a port whose last connections are still in TIME_WAIT (for about
    a minute after a server stopped) is free to it, while a live listener still makes it busy.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
