"""Run one untrusted command: no network, scrubbed environment, one writable dir, hard limits.

DESIGN §3: miner code runs only here. A run gets, from the first mechanism available:

* **namespaces**: bubblewrap (``bwrap``) with new network, PID, IPC, UTS and mount namespaces, an
  empty root where only the interpreter, the Python packages, a few files of /etc, /usr and the run's
  own directories are mounted (read-only, except the scratch dir), a private size-limited /tmp,
  ``--die-with-parent`` and ``--new-session``, all capabilities dropped; else ``unshare --net``
  (network only: the file system and /tmp are shared, so the unprivileged user matters more). With
  neither, runs are refused unless ``allow_unsandboxed`` (QUASAR_ALLOW_UNSANDBOXED) is set, and then
  every run logs a warning and carries it in ``SandboxResult.warnings``.
* **process and memory caps**: a cgroup (``pids.max``, ``memory.max``; see ``cgroup``). Without a
  writable cgroup, a root validator runs the command as ``nobody`` (``setpriv``) so that RLIMIT_NPROC
  applies (root ignores RLIMIT_NPROC), and on CPU RLIMIT_AS caps memory (not on GPU: CUDA reserves
  address space far beyond what it uses).
* **rlimits** (``preexec_fn``): CPU seconds, file size, open files, no core dumps.
* **an unprivileged user**: as root with bwrap the command drops to uid/gid 65534 inside, so even
  a file system mounted writable by mistake is not writable by it.
* **a wall-clock timeout** that kills everything: bwrap's process group and, with a cgroup, every
  process in it (a process that called ``setsid`` is still in the cgroup).
* **capped output**: stdout and stderr are drained continuously; only the last ``output_bytes``
  are kept. The scratch dir is measured twice a second and the run killed past ``scratch_bytes``.
* **one GPU**: ``CUDA_VISIBLE_DEVICES`` names one device, and under bwrap only that device node is
  mounted.

The parent talks to the command over the pipes it passes (``pass_fds``); see ``worker``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from . import cgroup as cgroups

log = logging.getLogger(__name__)

#: uid/gid the command runs as when the validator is root (Debian's ``nobody``/``nogroup``).
UNPRIVILEGED_ID = 65534
#: Where the run's directories appear inside bwrap.
SANDBOX_DIR = "/sandbox"
#: Files of /etc that Python, torch and triton read; nothing else of /etc is visible under bwrap.
_ETC_FILES = (
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/nsswitch.conf", "/etc/passwd",
    "/etc/group", "/etc/localtime", "/etc/hosts", "/etc/alternatives",
)  # fmt: skip
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/opt/conda")


class SandboxUnavailable(RuntimeError):
    """No sandbox can be built here; the message says how to get one (or the insecure override)."""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed run. ``cpu_s`` defaults to the wall time times the CPU count."""

    wall_s: float = 900.0
    cpu_s: int | None = None
    memory_bytes: int = 16 * 2**30
    #: Tasks (processes and threads: torch starts one thread per core) in the cgroup.
    max_pids: int = 512
    file_bytes: int = 2 * 2**30
    open_files: int = 1024
    output_bytes: int = 256 * 2**10
    scratch_bytes: int = 8 * 2**30
    tmp_bytes: int = 2 * 2**30

    def cpu_seconds(self) -> int:
        return self.cpu_s if self.cpu_s is not None else int(self.wall_s * max(os.cpu_count() or 1, 1)) + 10


@dataclass
class Mechanisms:
    """What isolates runs on this machine; ``describe()`` is logged and reported with each result."""

    namespaces: str  # "bwrap", "unshare" or "none"
    cgroup: str | None  # "v2", "v1" or None
    unprivileged_user: bool
    root: bool
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [self.namespaces if self.namespaces != "none" else "NO NAMESPACES"]
        parts.append(f"cgroup {self.cgroup}" if self.cgroup else "no cgroup")
        if self.unprivileged_user:
            parts.append(f"uid {UNPRIVILEGED_ID}")
        return ", ".join(parts)


@cache
def _bwrap_works() -> bool:
    if shutil.which("bwrap") is None:
        return False
    probe = [
        "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-net",
        "--unshare-pid", "--die-with-parent", "--", "true",
    ]  # fmt: skip
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


@cache
def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--net", "--", "true"], capture_output=True, timeout=30).returncode == 0


@cache
def _cgroup_version(parent: str | None) -> str | None:
    probe = cgroups.create(64 * 2**20, 16, parent)
    if probe is None:
        return None
    probe.remove()
    return f"v{probe.version}"


@cache
def _interpreter_reachable_unprivileged() -> bool:
    """Whether uid 65534 can start this interpreter in place (without bwrap's fresh mounts)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    command = [
        "setpriv", f"--reuid={UNPRIVILEGED_ID}", f"--regid={UNPRIVILEGED_ID}", "--clear-groups", "--",
        sys.executable, "-I", "-c", "import quasar.bench",
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, timeout=60, cwd="/").returncode == 0


def detect(*, allow_unsandboxed: bool = False, cgroup_parent: str | None = None) -> Mechanisms:
    """The mechanisms a run gets here. Raises :class:`SandboxUnavailable` when there is no namespace
    tool and the insecure override is off."""
    root = os.geteuid() == 0
    namespaces = "bwrap" if _bwrap_works() else "unshare" if _unshare_works() else "none"
    warnings: list[str] = []
    if namespaces == "none":
        if not allow_unsandboxed:
            raise SandboxUnavailable(
                "neither bubblewrap nor unshare can create namespaces here, so submissions cannot be "
                "isolated; install bubblewrap (apt-get install bubblewrap) or allow unprivileged user "
                "namespaces. QUASAR_ALLOW_UNSANDBOXED=true runs miner code WITHOUT isolation "
                "(development only)."
            )
        warnings.append(
            "INSECURE: QUASAR_ALLOW_UNSANDBOXED is set and no namespace tool works: miner code runs with "
            "network access and this machine's file system"
        )
    version = _cgroup_version(cgroup_parent)
    if namespaces == "bwrap":
        unprivileged = root
    else:
        unprivileged = root and version is None and _interpreter_reachable_unprivileged()
    if version is None and root and not unprivileged:
        warnings.append(
            "no writable cgroup and no unprivileged user: the number of processes is not capped "
            "(root ignores RLIMIT_NPROC); memory is capped by RLIMIT_AS on CPU only"
        )
    elif version is None and not root:
        warnings.append(
            "no writable cgroup: processes capped by RLIMIT_NPROC (per user), memory by RLIMIT_AS"
        )
    return Mechanisms(namespaces, version, unprivileged, root, warnings)


@dataclass
class SandboxResult:
    """How a sandboxed run ended. ``output`` is the tail of stdout+stderr (at most ``output_bytes``)."""

    returncode: int | None
    wall_s: float
    timed_out: bool
    output: bytes
    output_truncated: bool
    output_total_bytes: int
    memory_exceeded: bool = False
    pids_exceeded: bool = False
    scratch_exceeded: bool = False
    peak_memory_mb: float | None = None
    mechanisms: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def killed_by_signal(self) -> int | None:
        return -self.returncode if self.returncode is not None and self.returncode < 0 else None


class _TailReader(threading.Thread):
    """Drain a pipe forever (so the child never blocks on it) and keep only its last ``cap`` bytes."""

    def __init__(self, stream: int, cap: int) -> None:
        super().__init__(daemon=True)
        self._fd = stream
        self._cap = cap
        self._buffer = bytearray()
        self.total = 0

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            self.total += len(chunk)
            self._buffer += chunk
            if len(self._buffer) > 2 * self._cap:
                del self._buffer[: len(self._buffer) - self._cap]
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def tail(self) -> bytes:
        return bytes(self._buffer[-self._cap :])


def _dir_bytes(path: Path, stop_after: int) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
        if total > stop_after:
            break
    return total


def _python_paths() -> list[str]:
    """Directories the interpreter and its packages live in (mounted read-only under bwrap)."""
    import quasar

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    # Only the ``quasar`` package itself: an editable install would otherwise expose the whole
    # checkout (with its .env) through its parent directory.
    paths.add(os.path.dirname(os.path.realpath(quasar.__file__)))
    for entry in sys.path:
        if entry and os.path.isabs(entry) and os.path.exists(entry) and "site-packages" in entry:
            paths.add(os.path.realpath(entry))
    ordered = sorted(p for p in paths if p and os.path.exists(p))
    # A path already under another mounted path needs no mount of its own.
    return [p for p in ordered if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in ordered)]


def _gpu_device_nodes(gpu_index: int) -> list[str]:
    names = [f"/dev/nvidia{gpu_index}", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
    names += ["/dev/nvidia-modeset", "/dev/nvidia-caps"]
    return [n for n in names if os.path.exists(n)]


class Sandbox:
    """Runs commands under the mechanisms :func:`detect` finds. One instance serves many runs."""

    def __init__(
        self, limits: SandboxLimits | None = None, *, allow_unsandboxed: bool = False,
        cgroup_parent: str | None = None, gpu_index: int | None = None,
    ) -> None:  # fmt: skip
        self.limits = limits or SandboxLimits()
        self.cgroup_parent = cgroup_parent
        self.gpu_index = gpu_index
        self.mechanisms = detect(allow_unsandboxed=allow_unsandboxed, cgroup_parent=cgroup_parent)
        self._run_dirs: list[Path] = []

    # --- paths -----------------------------------------------------------------------------------
    def inside(self, name: str, host_path: Path) -> str:
        """Where ``host_path`` (mounted as ``name``) is seen by the command."""
        return f"{SANDBOX_DIR}/{name}" if self.mechanisms.namespaces == "bwrap" else str(host_path)

    def own_run_dir(self, work: Path) -> None:
        """Mark ``work`` as a directory the caller made for its runs (not the operator's): without
        bwrap, :meth:`start` may open it and what is below it to the sandbox user (o+x, no listing)."""
        self._run_dirs.append(work.resolve())

    def _let_through(self, path: Path) -> None:
        """Without bwrap the sandbox user sees host paths as they are, so it must be able to pass
        through every directory above ``path``: opened where ours, named for the operator where not."""
        for parent in path.resolve().parents:
            mode = parent.stat().st_mode
            if mode & 0o001:
                continue
            if any(parent == own or own in parent.parents for own in self._run_dirs):
                parent.chmod(mode | 0o001)
                continue
            raise SandboxUnavailable(
                f"the sandbox user (uid {UNPRIVILEGED_ID}) cannot reach {path}: {parent} has mode "
                f"{mode & 0o777:04o}, so other users cannot pass through it. Evaluate in a directory "
                f"under /tmp (or set TMPDIR to one), or run `chmod o+x {parent}`."
            )

    def _env(self, scratch_inside: str, tmp_inside: str, extra: Mapping[str, str]) -> dict[str, str]:
        # An allow-list: nothing of the validator's environment (tokens, wallet paths, DATABASE_URL)
        # reaches the command unless a caller names it here.
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": tmp_inside,
            "TMPDIR": tmp_inside,
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "TRITON_CACHE_DIR": f"{tmp_inside}/triton",
            "XDG_CACHE_HOME": f"{tmp_inside}/cache",
            "QUASAR_SCRATCH": scratch_inside,
        }
        # The driver still numbers devices physically, so the pinned index is the physical one; under
        # bwrap only that device's node is mounted, so naming another index would find nothing.
        env["CUDA_VISIBLE_DEVICES"] = "" if self.gpu_index is None else str(self.gpu_index)
        env.update(extra)
        return env

    def _bwrap_prefix(self, scratch: Path, tmp_bytes: int, ro: Mapping[str, Path]) -> list[str]:
        args = [
            "bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "sandbox", "--dev", "/dev", "--proc", "/proc",
            "--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", "/tmp",
        ]  # fmt: skip
        if not self.mechanisms.unprivileged_user:
            # Run as root, bwrap would hand the command every capability; with the unprivileged user,
            # setpriv drops them all when it changes uid (it needs CAP_SETUID until then).
            args += ["--cap-drop", "ALL"]
        for path in _SYSTEM_DIRS:
            if os.path.exists(path):
                args += ["--ro-bind", path, path]
        for path in _ETC_FILES:
            if os.path.exists(path):
                args += ["--ro-bind", path, path]
        # CPU topology for torch/OpenMP, and the GPU's PCI information for the CUDA driver.
        args += ["--ro-bind-try", "/sys", "/sys"]
        python_paths = _python_paths()
        # bwrap creates the parents of a mount point with the source's parent modes (/root is 0700):
        # create them world-traversable first, or the unprivileged user could not reach the mounts.
        parents = sorted({str(a) for p in python_paths for a in Path(p).parents if str(a) != "/"})
        for parent in parents:
            if not any(parent == d or parent.startswith(d + "/") for d in _SYSTEM_DIRS):
                args += ["--perms", "0755", "--dir", parent]
        for path in python_paths:
            args += ["--ro-bind", path, path]
        if self.gpu_index is not None:
            for node in _gpu_device_nodes(self.gpu_index):
                args += ["--dev-bind", node, node]
        args += ["--perms", "0755", "--dir", SANDBOX_DIR]
        for name, host in ro.items():
            args += ["--ro-bind", str(host), f"{SANDBOX_DIR}/{name}"]
        args += ["--bind", str(scratch), f"{SANDBOX_DIR}/scratch", "--chdir", f"{SANDBOX_DIR}/scratch"]
        return args + ["--"]

    def _setpriv_prefix(self) -> list[str]:
        return [
            "setpriv", f"--reuid={UNPRIVILEGED_ID}", f"--regid={UNPRIVILEGED_ID}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
        ]  # fmt: skip

    def _preexec(self, run_cgroup: cgroups.RunCgroup | None, cpu_s: int) -> Callable[[], None]:
        limits = self.limits
        cap_address_space = run_cgroup is None and self.gpu_index is None
        cap_processes = run_cgroup is None and (not self.mechanisms.root or self.mechanisms.unprivileged_user)

        def setup() -> None:
            # Runs in the child between fork and exec: everything after it inherits these limits.
            if run_cgroup is not None:
                run_cgroup.join()
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
            resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if cap_processes:
                # Counted per real user across the machine; ignored for root, hence the cgroup/nobody.
                resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_pids, limits.max_pids))
            if cap_address_space:
                resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))

        return setup

    # --- running ---------------------------------------------------------------------------------
    def start(
        self, argv: Sequence[str], *, scratch: Path, ro: Mapping[str, Path] | None = None,
        env: Mapping[str, str] | None = None, pass_fds: Sequence[int] = (), wall_s: float | None = None,
    ) -> SandboxProcess:  # fmt: skip
        """Start ``argv`` in the sandbox; ``scratch`` is its only writable directory.

        ``ro`` maps names to host paths mounted read-only (see :meth:`inside` for where they appear).
        The caller must :meth:`SandboxProcess.finish` the returned process (it is a context manager).
        """
        ro = dict(ro or {})
        scratch = Path(scratch)
        namespaces = self.mechanisms.namespaces
        bwrap = namespaces == "bwrap"
        tmp_host: Path | None = None
        if bwrap:
            tmp_inside = "/tmp"
        else:
            # Without a private /tmp the command gets a directory of its own under scratch.
            tmp_host = scratch / ".tmp"
            tmp_host.mkdir(exist_ok=True)
            tmp_inside = str(tmp_host)
        for warning in self.mechanisms.warnings:
            log.warning("sandbox: %s", warning)
        if self.mechanisms.unprivileged_user:
            os.chown(scratch, UNPRIVILEGED_ID, UNPRIVILEGED_ID)
            if tmp_host is not None:
                os.chown(tmp_host, UNPRIVILEGED_ID, UNPRIVILEGED_ID)
            for host in ro.values():
                # Read-only mounts keep their modes: make them readable by the unprivileged user.
                _make_world_readable(host)
            if not bwrap:
                for path in (scratch, *ro.values()):
                    self._let_through(path)
        scratch.chmod(0o700)

        command: list[str] = []
        if bwrap:
            command += self._bwrap_prefix(scratch, self.limits.tmp_bytes, ro)
        elif namespaces == "unshare":
            command += ["unshare", "--net", "--"]
        if self.mechanisms.unprivileged_user:
            command += self._setpriv_prefix()
        command += list(argv)

        run_cgroup = None
        if self.mechanisms.cgroup is not None:
            run_cgroup = cgroups.create(self.limits.memory_bytes, self.limits.max_pids, self.cgroup_parent)
            if run_cgroup is None:
                raise SandboxUnavailable(
                    "could not create the run's cgroup; check /sys/fs/cgroup permissions"
                )
        limits = self.limits
        wall = wall_s if wall_s is not None else limits.wall_s
        cpu_s = limits.cpu_s if limits.cpu_s is not None else int(wall * (os.cpu_count() or 1)) + 10
        read_end, write_end = os.pipe()
        try:
            proc = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=write_end, stderr=write_end, cwd=str(scratch),
                env=self._env(self.inside("scratch", scratch), tmp_inside, env or {}),
                pass_fds=tuple(pass_fds), start_new_session=True,
                preexec_fn=self._preexec(run_cgroup, cpu_s),
            )  # fmt: skip
        except BaseException:
            os.close(read_end)
            if run_cgroup is not None:
                run_cgroup.remove()
            raise
        finally:
            os.close(write_end)
        reader = _TailReader(read_end, limits.output_bytes)
        reader.start()
        return SandboxProcess(proc, reader, run_cgroup, scratch, limits, wall, self.mechanisms)


def _make_world_readable(root: Path) -> None:
    root.chmod(root.stat().st_mode | 0o055)
    for dirpath, dirs, files in os.walk(root):
        for name in dirs:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, os.lstat(p).st_mode | 0o055)
        for name in files:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, os.lstat(p).st_mode | 0o044)


class SandboxProcess:
    """A running sandboxed command: its stdin, its deadline, and :meth:`finish` to end and clean up."""

    def __init__(
        self, proc: subprocess.Popen[bytes], reader: _TailReader, run_cgroup: cgroups.RunCgroup | None,
        scratch: Path, limits: SandboxLimits, wall_s: float, mechanisms: Mechanisms,
    ) -> None:  # fmt: skip
        self.proc = proc
        self._reader = reader
        self._cgroup = run_cgroup
        self._scratch = scratch
        self._limits = limits
        self._mechanisms = mechanisms
        self.started = time.monotonic()
        self.deadline = self.started + wall_s
        self.timed_out = False
        self.scratch_exceeded = False
        self._finished: SandboxResult | None = None
        self._watch_stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish(kill=True)

    def _watch(self) -> None:
        # The deadline and the scratch size are enforced here, whatever the caller is blocked on.
        while not self._watch_stop.wait(0.5):
            if self.proc.poll() is not None:
                return
            if time.monotonic() > self.deadline:
                self.timed_out = True
                self.kill()
                return
            if _dir_bytes(self._scratch, self._limits.scratch_bytes) > self._limits.scratch_bytes:
                self.scratch_exceeded = True
                self.kill()
                return

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def kill(self) -> None:
        """SIGKILL the whole tree: the process group, and every process in the run's cgroup."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._cgroup is not None:
            self._cgroup.kill_all()

    def finish(self, *, kill: bool = False, wait_s: float | None = None) -> SandboxResult:
        """Wait for the command (up to its deadline, or ``wait_s``), kill what is left, clean up."""
        if self._finished is not None:
            return self._finished
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        if not kill:
            timeout = self.remaining() if wait_s is None else min(wait_s, self.remaining())
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                if wait_s is None:
                    self.timed_out = True
        self._watch_stop.set()
        # Whatever the command left running (a daemonised child, a forked helper) dies with it.
        self.kill()
        self.proc.wait()
        wall = time.monotonic() - self.started
        self._reader.join(timeout=5)
        result = SandboxResult(
            returncode=self.proc.returncode, wall_s=wall, timed_out=self.timed_out,
            output=self._reader.tail(), output_truncated=self._reader.total > self._limits.output_bytes,
            output_total_bytes=self._reader.total, scratch_exceeded=self.scratch_exceeded,
            mechanisms=self._mechanisms.describe(), warnings=list(self._mechanisms.warnings),
        )  # fmt: skip
        if self._cgroup is not None:
            result.memory_exceeded = self._cgroup.memory_exceeded()
            result.pids_exceeded = self._cgroup.pids_exceeded()
            result.peak_memory_mb = self._cgroup.peak_memory_mb()
            self._cgroup.remove()
        self._finished = result
        return result


def run(
    sandbox: Sandbox, argv: Sequence[str], *, scratch: Path, stdin: bytes = b"", **kwargs: object
) -> SandboxResult:
    """Run ``argv`` to completion in ``sandbox``, feeding it ``stdin``; the convenience form of start/finish."""
    process = sandbox.start(argv, scratch=scratch, **kwargs)  # type: ignore[arg-type]
    with process:
        if stdin and process.proc.stdin is not None:
            with contextlib.suppress(OSError):
                process.proc.stdin.write(stdin)
                process.proc.stdin.flush()
        return process.finish()
