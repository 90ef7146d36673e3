"""The sandbox on its own: network, environment, file system, limits, timeouts, output caps, refusal."""

from __future__ import annotations

import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quasar.evaluation import sandbox as sandbox_module
from quasar.evaluation.sandbox import Sandbox, SandboxLimits, SandboxUnavailable, detect, run
from tests.failing_bwrap import put_failing_bwrap_first

try:
    MECHANISMS = detect()
except SandboxUnavailable as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"no sandbox on this machine: {exc}", allow_module_level=True)

BOUNDED = MECHANISMS.cgroup is not None or MECHANISMS.unprivileged_user or not MECHANISMS.root


def _py(code: str) -> list[str]:
    return [sys.executable, "-I", "-c", code]


@pytest.fixture(autouse=True, params=["bwrap", "unshare"])
def sandbox_mode(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Every test under both sandboxes: bubblewrap, and the unshare walls behind a failing ``bwrap``."""
    if request.param == "unshare":
        put_failing_bwrap_first(tmp_path, monkeypatch)
    sandbox_module.forget_probes()
    try:
        found = detect().namespaces
    except SandboxUnavailable as exc:
        pytest.skip(f"no {request.param} sandbox here: {exc}")
    if found != request.param:
        pytest.skip(f"the {request.param} sandbox does not work here (found {found})")
    yield request.param
    monkeypatch.undo()
    sandbox_module.forget_probes()


@pytest.fixture
def box() -> Sandbox:
    return Sandbox(SandboxLimits(wall_s=30, memory_bytes=1024 * 2**20, max_pids=64, output_bytes=4096))


def test_mechanisms_are_reported(box: Sandbox, sandbox_mode: str) -> None:
    assert box.mechanisms.namespaces == sandbox_mode
    assert box.mechanisms.describe().startswith(
        {"bwrap": "bwrap, ", "unshare": "unshare walls, "}[sandbox_mode]
    )


def test_a_signal_is_reported_as_the_signal(box: Sandbox, tmp_path: Path) -> None:
    # Both wrappers report a command killed by a signal as status 128 + signal; read back, the
    # CPU-time and file-size limits keep their own reasons.
    result = run(box, _py("import os, signal; os.kill(os.getpid(), signal.SIGXCPU)"), scratch=tmp_path)
    assert result.killed_by_signal == signal.SIGXCPU, result


def test_no_network_even_to_loopback(box: Sandbox, tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    code = f"import socket\ntry:\n socket.create_connection(('127.0.0.1', {port}), timeout=2)\n print('CONNECTED')\nexcept OSError as e:\n print('blocked', e)"
    result = run(box, _py(code), scratch=tmp_path)
    with pytest.raises(OSError):
        server.accept()
    server.close()
    assert b"blocked" in result.output and b"CONNECTED" not in result.output


def test_environment_is_an_allow_list(box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2@db/q")
    monkeypatch.setenv("WALLET_PATH", "/root/.bittensor/wallets")
    result = run(box, _py("import os; print(sorted(os.environ))"), scratch=tmp_path)
    assert result.returncode == 0, result.output
    assert b"DATABASE_URL" not in result.output and b"WALLET_PATH" not in result.output
    assert b"hunter2" not in result.output


def test_only_scratch_is_writable(box: Sandbox, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    outside = tmp_path / "outside.txt"
    code = (
        "import os\n"
        f"open(os.path.join(os.environ['QUASAR_SCRATCH'], 'inside.txt'), 'w').write('ok')\n"
        f"try:\n open({str(outside)!r}, 'w').write('escaped')\n print('ESCAPED')\n"
        "except OSError as e:\n print('blocked', type(e).__name__)\n"
    )
    result = run(box, _py(code), scratch=scratch)
    assert (scratch / "inside.txt").read_text() == "ok"
    assert not outside.exists()
    assert b"blocked" in result.output


def test_wall_timeout_kills_the_whole_tree(tmp_path: Path) -> None:
    box = Sandbox(SandboxLimits(wall_s=3, max_pids=64, memory_bytes=512 * 2**20))
    # A grandchild that leaves the process group and keeps writing a heartbeat.
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    while True:\n"
        "        open('beat', 'w').write(str(time.time())); time.sleep(0.1)\n"
        "time.sleep(1000)\n"
    )
    started = time.monotonic()
    result = run(box, _py(code), scratch=tmp_path)
    assert result.timed_out and time.monotonic() - started < 20
    beat = tmp_path / "beat"
    assert beat.exists()
    first = beat.read_text()
    time.sleep(0.5)
    assert beat.read_text() == first, "a process of the sandbox outlived the timeout"


def test_output_is_drained_and_capped(box: Sandbox, tmp_path: Path) -> None:
    code = "import sys\nfor _ in range(64):\n    sys.stdout.write('y' * (1 << 20))\nprint('END')"
    result = run(box, _py(code), scratch=tmp_path)
    assert result.returncode == 0
    assert result.output_truncated and result.output_total_bytes > 64 * 2**20
    assert len(result.output) <= 4096 and result.output.rstrip().endswith(b"END")


def test_file_size_limit(tmp_path: Path) -> None:
    box = Sandbox(SandboxLimits(wall_s=30, file_bytes=2**20, max_pids=64, memory_bytes=512 * 2**20))
    code = "open('big', 'wb').write(b'x' * (8 << 20))"
    result = run(box, _py(code), scratch=tmp_path)
    assert result.returncode != 0
    assert (tmp_path / "big").stat().st_size <= 2**20


@pytest.mark.skipif(not BOUNDED, reason="no cgroup and no unprivileged user here: processes are not capped")
def test_process_cap_holds(tmp_path: Path) -> None:
    box = Sandbox(SandboxLimits(wall_s=20, max_pids=32, memory_bytes=512 * 2**20))
    code = (
        "import os, time\nmade = 0\n"
        "for _ in range(200):\n"
        "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
        "    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
        "    made += 1\n"
        "print('made', made)\n"
    )
    result = run(box, _py(code), scratch=tmp_path)
    made = int(result.output.split(b"made")[-1].split()[0])
    assert made < 32


@pytest.mark.skipif(
    MECHANISMS.cgroup is None, reason="no writable cgroup: memory is capped by RLIMIT_AS only"
)
def test_memory_cap_holds(tmp_path: Path) -> None:
    box = Sandbox(SandboxLimits(wall_s=30, max_pids=32, memory_bytes=256 * 2**20))
    code = "x = []\nwhile True:\n    x.append(b'z' * (32 << 20))\n"
    result = run(box, _py(code), scratch=tmp_path)
    assert result.returncode != 0 and result.memory_exceeded


def test_refuses_without_namespaces_unless_insecure_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither bwrap nor unshare on PATH: the remembered probes are forgotten around the check.
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    sandbox_module.forget_probes()
    try:
        for require in ("bwrap", "namespaces"):
            with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap") as refused:
                detect(require=require)  # type: ignore[arg-type]
            assert "`bwrap` is not on the PATH" in str(refused.value)
        # Unisolated runs need both the requirement and the override, and never happen as root.
        with pytest.raises(SandboxUnavailable, match="QUASAR_ALLOW_UNSANDBOXED"):
            detect(require="none")
        if MECHANISMS.root:
            with pytest.raises(SandboxUnavailable, match="never as root"):
                detect(require="none", allow_unsandboxed=True)
        else:
            insecure = detect(require="none", allow_unsandboxed=True)
            assert insecure.namespaces == "none"
            assert any("INSECURE" in w for w in insecure.warnings)
    finally:
        monkeypatch.undo()
        sandbox_module.forget_probes()


def test_freeze_stops_every_process_and_thread_until_thaw(box: Sandbox, tmp_path: Path) -> None:
    # A process with a busy thread and a forked child that also counts: while frozen nothing moves.
    code = (
        "import os, sys, threading, time\n"
        "def tick(path):\n"
        "    n = 0\n"
        "    while True:\n"
        "        n += 1\n"
        "        open(path, 'w').write(str(n))\n"
        "        time.sleep(0.005)\n"
        "scratch = os.environ['QUASAR_SCRATCH']\n"
        "if os.fork() == 0:\n"
        "    tick(scratch + '/child')\n"
        "threading.Thread(target=tick, args=(scratch + '/thread',), daemon=True).start()\n"
        "print('ready', flush=True)\n"
        "tick(scratch + '/main')\n"
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    process = box.start(_py(code), scratch=scratch)
    try:
        deadline = time.monotonic() + 20
        names = ("main", "thread", "child")
        while not all((scratch / n).exists() and (scratch / n).read_text() for n in names):
            assert time.monotonic() < deadline, "the ticking processes did not start"
            time.sleep(0.05)
        process.freeze()
        frozen = {n: (scratch / n).read_text() for n in names}
        time.sleep(0.3)
        assert {n: (scratch / n).read_text() for n in names} == frozen
        assert len(process.processes()) >= 3  # the wrapper, the command and its child at least
        process.thaw()
        time.sleep(0.3)
        moved = {n: (scratch / n).read_text() for n in names}
        assert all(moved[n] != frozen[n] for n in names), (frozen, moved)
    finally:
        process.finish(kill=True)
