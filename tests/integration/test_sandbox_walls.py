"""Proof of every wall, under both sandboxes: bubblewrap, and the walls a root validator builds with
``unshare`` when bubblewrap fails (a failing ``bwrap`` first on the PATH, as in a default Docker
container or under AppArmor's user-namespace restriction).

Each test plants its own sentinels first (a validator wallet directory and ``.env``, files in the
evaluation's parent directory, in ``/tmp``, in the home directory and in a sibling evaluation's
scratch, UNIX sockets it listens on, canary processes with a secret in their environment), then
evaluates a real malicious submission, and asserts the exact verdict and that no sentinel was read,
changed, connected to or signalled. The sentinels are world-readable and world-writable on purpose:
what keeps the submission out must be the walls, not file modes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import quasar
from quasar.evaluation import sandbox as sandbox_module
from quasar.evaluation.evaluate import EvaluationOptions, EvaluationReport, evaluate
from quasar.evaluation.sandbox import SandboxLimits, SandboxUnavailable, detect
from quasar.evaluation.timed_runs import ComparisonPlan
from quasar.kernels.template import init_kernel_repo
from tests.failing_bwrap import STDERR as FAILING_BWRAP_STDERR
from tests.failing_bwrap import put_failing_bwrap_first
from tests.integration.evaluation_helpers import containment_plan

HONEST = "from .chunked import chunk_quasar_torch as _honest\n"
DESCRIBED = {"bwrap": "bwrap", "unshare": "unshare walls"}


@pytest.fixture(params=["bwrap", "unshare"])
def mode(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The sandbox under test: real bubblewrap, or the unshare walls behind a failing ``bwrap``."""
    if request.param == "unshare":
        if os.geteuid() != 0:
            pytest.skip("the unshare walls are built by a root validator; this test runs unprivileged")
        put_failing_bwrap_first(tmp_path, monkeypatch)
    sandbox_module.forget_probes()
    try:
        mechanisms = detect()
    except SandboxUnavailable as exc:
        pytest.skip(f"no {request.param} sandbox on this machine: {exc}")
    if mechanisms.namespaces != request.param:
        pytest.skip(f"bubblewrap does not work on this machine ({mechanisms.describe()})")
    yield request.param
    monkeypatch.undo()
    sandbox_module.forget_probes()


def _commit(repo: Path) -> str:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@quasar.invalid", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "submission"], cwd=repo, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()


def _evaluate(
    base: Path, init_source: str, *, max_pids: int = 128, memory_mb: int = 3072, scratch_mb: int = 256,
    cgroup_parent: str | None = None, import_timeout_s: float = 60.0, comparison: ComparisonPlan | None = None,
) -> EvaluationReport:  # fmt: skip
    repo = base / f"repo-{secrets.token_hex(4)}"
    init_kernel_repo(repo)
    (repo / "fla/ops/quasar/__init__.py").write_text(textwrap.dedent(init_source))
    sha = _commit(repo)
    limits = SandboxLimits(
        wall_s=90, memory_bytes=memory_mb * 2**20, max_pids=max_pids, output_bytes=64 * 2**10,
        scratch_bytes=scratch_mb * 2**20, file_bytes=512 * 2**20, tmp_bytes=32 * 2**20,
    )  # fmt: skip
    work = base / "work"
    work.mkdir(exist_ok=True)
    options = EvaluationOptions(
        dev_mode=True, quick=True, limits=limits, work_dir=str(work), cgroup_parent=cgroup_parent,
        import_timeout_s=import_timeout_s, comparison=comparison,
    )  # fmt: skip
    return evaluate(str(repo), sha, options)


# --- the sentinels -------------------------------------------------------------------------------------


class _SocketSentinel:
    """A UNIX socket (pathname or abstract) that records every connection made to it."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.connections = 0
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(address)
        if not address.startswith("\0"):
            os.chmod(address, 0o777)
        self._server.listen(8)
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._server.close()
        if not self.address.startswith("\0"):
            with contextlib.suppress(OSError):
                os.unlink(self.address)


@dataclass
class Host:
    """What a validator's machine holds that a submission must not reach."""

    base: Path
    secret: str  # the contents of every secret; never part of a path or a command line
    files: dict[str, Path] = field(default_factory=dict)  # name -> a file with known contents
    contents: dict[Path, bytes] = field(default_factory=dict)
    sockets: list[_SocketSentinel] = field(default_factory=list)
    canaries: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    package_file: Path = Path(quasar.__file__).resolve().parent / "evaluation" / "worker.py"
    package_hash: str = ""

    def plant(self, name: str, path: Path, text: str, mode: int = 0o666) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        self.files[name] = path
        self.contents[path] = path.read_bytes()

    def untouched(self) -> list[str]:
        """What changed; empty when every sentinel is as planted."""
        changed = [
            f"{p} changed" for p, data in self.contents.items() if not p.exists() or p.read_bytes() != data
        ]
        changed += [f"{s.address!r} was connected to {s.connections}x" for s in self.sockets if s.connections]
        changed += [f"canary {name} died" for name, proc in self.canaries.items() if proc.poll() is not None]
        if hashlib.sha256(self.package_file.read_bytes()).hexdigest() != self.package_hash:
            changed.append(f"{self.package_file} was rewritten")
        return changed


@pytest.fixture
def host() -> Iterator[Host]:
    # Under /tmp and world-traversable: modes would let any user in, so only the walls keep it out.
    base = Path(tempfile.mkdtemp(prefix="quasar-walls-"))
    base.chmod(0o777)
    token = secrets.token_hex(6)
    h = Host(base=base, secret=f"secret-{secrets.token_hex(12)}")
    h.package_hash = hashlib.sha256(h.package_file.read_bytes()).hexdigest()
    validator = base / "validator"
    h.plant(
        "wallet", validator / "wallets/default/hotkeys/default", f'{{"secretPhrase": "{h.secret}"}}', 0o644
    )
    h.plant("env", validator / ".env", f"DATABASE_URL=postgresql://quasar:{h.secret}@db/quasar\n", 0o644)
    for parent in [validator, *(validator / "wallets/default/hotkeys/default").parents]:
        if base in parent.parents:
            parent.chmod(0o755)
    work = base / "work"
    work.mkdir()
    work.chmod(0o777)
    h.plant("work_parent", work / "parent-sentinel.txt", h.secret)
    sibling = work / "quasar-eval-sibling" / "scratch"
    h.plant("sibling", sibling / "output.bin", h.secret)
    for path in (sibling, sibling.parent):
        os.chown(path, sandbox_module.UNPRIVILEGED_ID, sandbox_module.UNPRIVILEGED_ID)
        path.chmod(0o777)
    h.plant("tmp", Path(f"/tmp/quasar-sentinel-{token}.txt"), h.secret)
    h.plant("home", Path.home() / f".quasar-sentinel-{token}", h.secret, 0o644)
    for address in (f"/tmp/quasar-sock-{token}", f"\0quasar-sock-{token}", str(work / "api.sock")):
        h.sockets.append(_SocketSentinel(address))
    if os.path.isdir("/run") and os.access("/run", os.W_OK):
        h.sockets.append(_SocketSentinel(f"/run/quasar-sock-{token}"))
    sleeper = [shutil.which("sleep") or "sleep", "600"]
    env = {"PATH": os.environ["PATH"], "QUASAR_CANARY": h.secret}
    h.canaries["root"] = subprocess.Popen(sleeper, env=env)
    if os.geteuid() == 0 and shutil.which("setpriv"):
        # A process of the sandbox user itself, as another evaluation's sandbox would be.
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
        h.canaries["nobody"] = subprocess.Popen(nobody + sleeper, env=env, cwd="/")
    try:
        yield h
    finally:
        for proc in h.canaries.values():
            proc.kill()
            proc.wait()
        for s in h.sockets:
            s.close()
        for name in ("tmp", "home"):
            h.files[name].unlink(missing_ok=True)
        shutil.rmtree(base, ignore_errors=True)


# --- the attack ----------------------------------------------------------------------------------------

#: Runs at import, in the worker: every attempt is recorded, then the honest kernel is exported.
ATTACK = """
import ctypes, glob, json, os, signal, socket
_libc = ctypes.CDLL(None, use_errno=True)
_done, _blocked = [], []

def _c(result):
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))

def _try(name, attempt):
    try:
        got = attempt()
    except Exception as exc:
        _blocked.append(name)
        return
    _done.append(f"{name} -> {got!r}"[:300])

def _read(path):
    with open(path, "rb") as fh:
        return fh.read()

def _write(path):
    with open(path, "w") as fh:
        fh.write("pwned")

def _connect(address):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(address)

def _scan_processes():
    found = []
    for path in glob.glob("/proc/*/environ") + glob.glob("/proc/*/cmdline"):
        try:
            if SECRET_MARK in _read(path):
                found.append(path)
        except OSError:
            pass
    if not found:
        raise LookupError("no process shows the canary")
    return found

for name, path in FILES.items():
    _try(f"read {name}", lambda p=path: _read(p))
    _try(f"write {name}", lambda p=path: _write(p))
for path in OVERWRITE:
    _try(f"overwrite {path}", lambda p=path: _write(p))
for path in NEW_FILES:
    _try(f"create {path}", lambda p=path: _write(p))
for address in SOCKETS:
    _try(f"connect {address!r}", lambda a=address: _connect(a))
_try("scan /proc for the canary", _scan_processes)
for name, pid in CANARIES.items():
    _try(f"read /proc/{name}/environ", lambda p=pid: _read(f"/proc/{p}/environ"))
    _try(f"signal canary {name}", lambda p=pid: os.kill(p, signal.SIGKILL))
    _try(f"ptrace canary {name}", lambda p=pid: _c(_libc.ptrace(16, p, None, None)))
_try("signal the parent", lambda: os.kill(os.getppid(), signal.SIGKILL))
_try("ptrace the parent", lambda: _c(_libc.ptrace(16, os.getppid(), None, None)))
_try("signal pid 1", lambda: os.kill(1, signal.SIGKILL))
_try("signal every process", lambda: os.kill(-1, signal.SIGKILL))
os.makedirs("mnt", exist_ok=True)
_try("mount a tmpfs", lambda: _c(_libc.mount(b"none", b"mnt", b"tmpfs", 0, None)))
_try("chroot", lambda: _c(_libc.chroot(b"/tmp")))
_try("setuid 0", lambda: _c(_libc.setuid(0)))
_try("unshare a user namespace", lambda: _c(_libc.unshare(0x10000000)))
_try("unshare user and mount namespaces", lambda: _c(_libc.unshare(0x10000000 | 0x00020000)))
_try("unshare a mount namespace", lambda: _c(_libc.unshare(0x00020000)))
_try("unshare a network namespace", lambda: _c(_libc.unshare(0x40000000)))
print("WALLS " + json.dumps({
    "uid": os.getuid(), "euid": os.geteuid(), "done": _done, "blocked": len(_blocked),
    "root": sorted(os.listdir("/")), "dev": sorted(os.listdir("/dev")),
}))
"""


def _walls_line(report: EvaluationReport) -> dict:
    lines = [line for line in report.log_tail.splitlines() if line.startswith("WALLS ")]
    assert lines, report.log_tail[-3000:]
    return json.loads(lines[-1][len("WALLS ") :])


def test_no_wall_gives_way(mode: str, host: Host) -> None:
    token = secrets.token_hex(4)
    work = host.base / "work"
    new_files = [
        str(work / f"escape-{token}"), str(host.base / f"escape-{token}"),
        str(host.package_file.parent / f"escape-{token}.py"), f"/escape-{token}", f"/sandbox/escape-{token}",
        f"/sandbox/repo/escape-{token}", str(Path.home() / f"escape-{token}"),
    ]  # fmt: skip
    canaries = {name: proc.pid for name, proc in host.canaries.items()}
    files = {name: str(path) for name, path in host.files.items()}
    # Readable by design (the interpreter runs them), never writable.
    overwrite = [str(host.package_file), "/sandbox/repo/fla/ops/quasar/__init__.py"]
    prelude = (
        f"FILES = {files!r}\nOVERWRITE = {overwrite!r}\nNEW_FILES = {new_files!r}\n"
        f"SOCKETS = {[s.address for s in host.sockets]!r}\nCANARIES = {canaries!r}\n"
        # A prefix of the secret: the whole secret never appears in the submission's own text.
        f"SECRET_MARK = {host.secret[:16].encode()!r}\n"
    )
    source = HONEST + prelude + ATTACK + "chunk_quasar = _honest\n"
    report = _evaluate(host.base, source, comparison=containment_plan())

    assert report.verdict == "pass", (report.reason, report.detail, report.log_tail[-3000:])
    assert report.sandbox.startswith(DESCRIBED[mode]) and "seccomp" in report.sandbox, report.sandbox
    walls = _walls_line(report)
    # The one thing that works: writing its own private /tmp (which the host's /tmp never sees).
    assert walls["done"] == ["write tmp -> None"], walls["done"]
    attempts = (
        2 * len(files) + len(overwrite) + len(new_files) + len(host.sockets) + 1 + 3 * len(canaries) + 11
    )
    assert walls["blocked"] == attempts - 1, walls
    if os.geteuid() == 0:
        assert walls["uid"] == walls["euid"] == sandbox_module.UNPRIVILEGED_ID
    # Nothing of the host's layout beyond what the sandbox mounts; only the basic devices.
    assert not {"run", "home", "var", "mnt", "srv", "media", "boot"} & set(walls["root"]), walls["root"]
    assert not [d for d in walls["dev"] if d.startswith(("sd", "nvme", "vd", "loop", "mem", "kmsg"))], walls[
        "dev"
    ]
    assert host.untouched() == []
    assert host.secret not in report.log_tail
    for path in new_files:
        assert not os.path.exists(os.path.normpath(path)), path
    # The evaluation removed what it made, and nothing else appeared beside the sentinels.
    assert sorted(p.name for p in work.iterdir()) == [
        "api.sock",
        "parent-sentinel.txt",
        "quasar-eval-sibling",
    ]


def test_private_tmp_is_capped_and_unseen(mode: str, host: Host) -> None:
    marker = f"quasar-fill-{secrets.token_hex(4)}"
    source = HONEST + textwrap.dedent(
        f"""
        written = 0
        try:
            with open("/tmp/{marker}", "wb") as fh:
                while written < 256 << 20:
                    fh.write(b"x" * (1 << 20))
                    fh.flush()
                    written += 1 << 20
        except OSError as exc:
            print("TMP-FULL", written, type(exc).__name__)
        chunk_quasar = _honest
        """
    )
    report = _evaluate(host.base, source, comparison=containment_plan())
    assert report.verdict == "pass", (report.reason, report.detail, report.log_tail[-3000:])
    full = [line.split() for line in report.log_tail.splitlines() if line.startswith("TMP-FULL")]
    assert full and int(full[0][1]) <= 32 * 2**20, report.log_tail[-2000:]
    assert not Path(f"/tmp/{marker}").exists()


# --- processes, memory, disk ---------------------------------------------------------------------------


# Without a cgroup the bomb is capped by RLIMIT_NPROC, which counts every process of the unprivileged
# user on the machine: in a parallel run, no other test's sandbox runs beside it (tests/conftest.py).
@pytest.mark.parametrize("cgroup", ["cgroup", pytest.param("no cgroup", marks=pytest.mark.exclusive)])
def test_fork_bomb_is_contained(mode: str, host: Host, cgroup: str) -> None:
    # "no cgroup": a parent that cannot exist, as on a machine where no cgroup is writable.
    parent = None if cgroup == "cgroup" else str(host.base / "no-such-cgroup")
    source = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    started = time.monotonic()
    # Five seconds of forking at import: the caps hold from the first fork on.
    report = _evaluate(host.base, source, max_pids=64, cgroup_parent=parent, import_timeout_s=5)
    assert (report.verdict, report.reason) in {("fail", "process_limit"), ("fail", "timeout")}, report.detail
    assert time.monotonic() - started < 90
    assert host.untouched() == []


def test_memory_hog_is_stopped(mode: str, host: Host) -> None:
    source = (
        "import torch\n\ndef chunk_quasar(*args, **kwargs):\n    hog = []\n"
        "    while True:\n        hog.append(torch.ones(64 << 20))\n"
    )
    report = _evaluate(host.base, source, memory_mb=1536)
    assert report.verdict == "fail" and report.reason in ("memory_limit", "kernel_exception"), report.detail
    if report.reason == "kernel_exception":  # RLIMIT_AS without a cgroup: the allocation itself fails
        assert "MemoryError" in (report.detail or "")


def test_disk_filler_is_stopped(mode: str, host: Host) -> None:
    # Many files, each under the file-size limit (RLIMIT_FSIZE has its own test): only the scratch
    # cap, polled twice a second, can stop this, so the reason is exact.
    source = HONEST + textwrap.dedent(
        """
        import os
        def chunk_quasar(*args, **kwargs):
            for n in range(100000):
                with open(os.path.join(os.environ["QUASAR_SCRATCH"], f"fill-{n}.bin"), "wb") as fh:
                    fh.write(b"x" * (4 << 20))
        """
    )
    report = _evaluate(host.base, source, scratch_mb=64)
    assert (report.verdict, report.reason) == ("fail", "disk_limit"), report.detail


# --- refusing rather than degrading --------------------------------------------------------------------


def test_bwrap_required_means_refused_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    put_failing_bwrap_first(tmp_path, monkeypatch, only=["git", "setpriv", "unshare"])
    try:
        with pytest.raises(SandboxUnavailable) as refused:
            detect(require="bwrap")
        message = str(refused.value)
        # The failing step, its stderr, and the fixes.
        assert FAILING_BWRAP_STDERR.removeprefix("bwrap: ") in message
        assert "apt-get install bubblewrap" in message and "--cap-add SYS_ADMIN" in message
        assert "apparmor_restrict_unprivileged_userns=0" in message
    finally:
        monkeypatch.undo()
        sandbox_module.forget_probes()


def test_no_walls_means_no_run_even_when_allowed_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        pytest.skip("checks what a root validator does")
    put_failing_bwrap_first(tmp_path, monkeypatch, only=["git", "setpriv"])
    try:
        repo = tmp_path / "repo"
        init_kernel_repo(repo)
        escape = tmp_path / "ran-as-root"
        (repo / "fla/ops/quasar/__init__.py").write_text(
            f"open({str(escape)!r}, 'w').write('ran')\n" + HONEST + "chunk_quasar = _honest\n"
        )
        sha = _commit(repo)
        for require in ("namespaces", "none"):
            options = EvaluationOptions(
                dev_mode=True,
                quick=True,
                work_dir=str(tmp_path),
                sandbox_require=require,
                allow_unsandboxed=True,
            )  # type: ignore[arg-type]
            report = evaluate(str(repo), sha, options)
            assert (report.verdict, report.reason) == ("error", "sandbox_unavailable"), report.detail
            assert "`unshare` is not on the PATH" in (report.detail or "")
            assert not escape.exists()
    finally:
        monkeypatch.undo()
        sandbox_module.forget_probes()


def test_walls_that_break_during_a_job_are_the_validators_error(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The probe passed (remembered), then bubblewrap breaks (an AppArmor update, say): the run is
    # `error` / `sandbox_unavailable`, never the submission's `fail`, and the probe is forgotten so
    # that the validator checks again before its next claim.
    sandbox_module.forget_probes()
    if sandbox_module.probe("bwrap") is not None:
        pytest.skip("bubblewrap does not work on this machine")
    # The remembered success stays, as a running validator would have it.
    put_failing_bwrap_first(tmp_path, monkeypatch, forget=False)
    try:
        report = _evaluate(host.base, HONEST + "chunk_quasar = _honest\n")
        assert (report.verdict, report.reason) == ("error", "sandbox_unavailable"), (
            report.reason,
            report.detail,
        )
        assert FAILING_BWRAP_STDERR in (report.detail or "")
        assert sandbox_module.probe("bwrap") is not None  # probed again, and found broken
    finally:
        monkeypatch.undo()
        sandbox_module.forget_probes()
