"""Run one untrusted command: no network, scrubbed environment, one writable dir, hard limits.

DESIGN §3: miner code runs only here, and never as root. A run gets:

* **walls** (namespaces), from the first that works here:

  - ``bwrap``: bubblewrap with new network, PID, IPC, UTS, cgroup and mount namespaces;
  - ``unshare``: where bubblewrap fails (a container's seccomp profile, AppArmor) and the validator is
    root, the same walls built by ``walls`` (``unshare`` + ``pivot_root``, then root is dropped).

  Both get the same ``Layout``: an empty root where only the interpreter, the Python packages, a few
  files of /etc, /usr, a read-only /sys and the run's own directories are mounted (read-only, except
  the scratch dir), a private size-limited /tmp, a /dev with only the evaluation's GPU, a /proc of
  the new PID namespace. The command runs as uid/gid 65534 when the validator is root, with no
  capabilities, ``no_new_privs``, and the ``seccomp`` filter that refuses new user namespaces.
  With neither, a run is refused unless the operator required ``none`` and allowed it
  (``SANDBOX_REQUIRE=none`` with ``QUASAR_ALLOW_UNSANDBOXED``), and never as root.
* **a requirement** (``SANDBOX_REQUIRE``): ``bwrap``, ``namespaces`` (either walls) or ``none``.
  :func:`detect` probes by running a real command through the real walls (retried once, every
  failure logged with its command and stderr) and raises :class:`SandboxUnavailable`, naming the
  failing step, its stderr and the fix, when the requirement is not met.
* **process and memory caps**: a cgroup (``pids.max``, ``memory.max``; see ``cgroup``); without a
  writable one, RLIMIT_NPROC for the unprivileged user and, on CPU, RLIMIT_AS.
* **rlimits** (``preexec_fn``): CPU seconds, file size, open files, no core dumps.
* **a wall-clock timeout** that kills everything: the wrapper's process group (its PID namespace
  dies with it) and, with a cgroup, every process in it.
* **capped output**: stdout and stderr are drained continuously; only the last ``output_bytes``
  are kept. The scratch dir is measured twice a second and the run killed past ``scratch_bytes``.
* **one GPU**: ``CUDA_VISIBLE_DEVICES`` names one device, and only that device's node is mounted.

The parent talks to the command over the pipes it passes (``pass_fds``); see ``worker``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

from . import cgroup as cgroups
from . import seccomp
from .walls import WALLS_FAILED

log = logging.getLogger(__name__)

#: uid/gid the command runs as when the validator is root (Debian's ``nobody``/``nogroup``).
UNPRIVILEGED_ID = 65534
#: Where the run's directories appear inside the walls.
SANDBOX_DIR = "/sandbox"
#: Files of /etc that Python, torch and triton read; nothing else of /etc is visible inside.
_ETC_FILES = (
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/nsswitch.conf", "/etc/passwd",
    "/etc/group", "/etc/localtime", "/etc/hosts", "/etc/alternatives",
)  # fmt: skip
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/opt/conda")

Requirement = Literal["bwrap", "namespaces", "none"]
REQUIREMENTS: tuple[str, ...] = ("bwrap", "namespaces", "none")

#: How to get each kind of walls, for the messages of a failed probe.
_FIX_CONTAINER = (
    "in Docker, run the validator with --security-opt seccomp=unconfined --security-opt apparmor=unconfined "
    "(what Dockerfile.validator and docker-compose.yml use; a validator running as root in its container can "
    "use --cap-add SYS_ADMIN --security-opt apparmor=unconfined instead)"
)
_FIX_BWRAP = (
    "install bubblewrap (apt-get install bubblewrap); " + _FIX_CONTAINER + "; where AppArmor restricts user "
    "namespaces (Ubuntu 23.10+), sysctl kernel.apparmor_restrict_unprivileged_userns=0"
)
_FIX_UNSHARE = (
    "run the validator as root with CAP_SYS_ADMIN (util-linux's unshare on the PATH); " + _FIX_CONTAINER
)


#: Resolved in the parent: loading a library between fork and exec can deadlock on the loader's lock.
_prctl = ctypes.CDLL(None).prctl
_PR_SET_PDEATHSIG = 1


class SandboxUnavailable(RuntimeError):
    """The required isolation cannot be built here; the message names the failing step and the fix."""


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
    """What isolates runs on this machine; ``describe()`` is logged and posted with each result."""

    namespaces: str  # "bwrap", "unshare" or "none"
    cgroup: str | None  # "v2", "v1" or None
    root: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def unprivileged_user(self) -> bool:
        """A root validator's commands run as uid 65534 (``none`` is refused as root)."""
        return self.root

    def describe(self) -> str:
        parts = [{"bwrap": "bwrap", "unshare": "unshare walls", "none": "NO SANDBOX"}[self.namespaces]]
        parts.append(f"cgroup {self.cgroup}" if self.cgroup else "no cgroup")
        if self.unprivileged_user:
            parts.append(f"uid {UNPRIVILEGED_ID}")
        if self.namespaces != "none":
            parts.append("seccomp")
        return ", ".join(parts)


# --- the layout both walls get ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Mount:
    """One entry of the layout: ``ro``/``rw`` bind ``src`` at ``dst``, a ``dir``, a ``tmpfs``, a ``dev`` node."""

    kind: Literal["ro", "rw", "dir", "tmpfs", "dev"]
    dst: str
    src: str | None = None
    mode: int = 0o755
    size: int | None = None
    #: Submounts too (bubblewrap's binds always are); off for /sys, whose submounts (cgroups,
    #: debugfs, bpf...) no command needs. Only the unshare walls can honour it.
    recursive: bool = True


def _python_paths() -> list[str]:
    """Directories the interpreter and its packages live in (mounted read-only inside)."""
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


def layout(scratch: Path, ro: Mapping[str, Path], *, gpu_index: int | None, tmp_bytes: int) -> list[Mount]:
    """Everything a sandboxed command sees of the file system (besides /dev and /proc)."""
    mounts = [Mount("ro", p, p) for p in (*_SYSTEM_DIRS, *_ETC_FILES) if os.path.lexists(p)]
    # The private /tmp comes before anything that may live below it (a checkout under /tmp, the
    # scratch dir): a mount hides whatever was mounted below its mount point earlier.
    mounts.append(Mount("tmpfs", "/tmp", mode=0o1777, size=tmp_bytes))
    # CPU topology for torch/OpenMP, and the GPU's PCI information for the CUDA driver.
    if os.path.isdir("/sys"):
        mounts.append(Mount("ro", "/sys", "/sys", recursive=False))
    # A venv made from the system's Python has /usr among its paths: mounted already (a system dir
    # that is a link, /bin -> usr/bin, is resolved through its target).
    system = [d for d in _SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    python_paths = [p for p in _python_paths() if not any(p == d or p.startswith(d + "/") for d in system)]
    # Mount points' parents are made world-traversable (the host's /root is 0700), or the
    # unprivileged user could not reach the interpreter below them.
    parents = sorted({str(a) for p in python_paths for a in Path(p).parents if str(a) != "/"})
    taken = {m.dst for m in mounts}  # /tmp, when the checkout is under it: already a private tmpfs
    mounts += [
        Mount("dir", d)
        for d in parents
        if d not in taken and not any(d == s or d.startswith(s + "/") for s in system)
    ]
    mounts += [Mount("ro", p, p) for p in python_paths]
    if gpu_index is not None:
        mounts += [Mount("dev", node, node) for node in _gpu_device_nodes(gpu_index)]
    mounts.append(Mount("dir", SANDBOX_DIR))
    mounts += [Mount("ro", f"{SANDBOX_DIR}/{name}", str(host)) for name, host in ro.items()]
    mounts.append(Mount("rw", f"{SANDBOX_DIR}/scratch", str(scratch)))
    for i, earlier in enumerate(mounts):
        hidden_by = [
            m.dst for m in mounts[i + 1 :] if m.kind != "dir" and earlier.dst.startswith(m.dst + "/")
        ]
        if hidden_by:
            raise SandboxUnavailable(
                f"the sandbox layout mounts {hidden_by[0]} over {earlier.dst}; this is a bug"
            )
    return mounts


def _tool(name: str) -> str:
    """``name`` as found on the validator's PATH now (the command's own PATH is the sandbox's)."""
    return shutil.which(name) or name


def bwrap_command(mounts: Sequence[Mount], *, drop_caps: bool, seccomp_fd: int) -> list[str]:
    """The bubblewrap prefix for ``mounts``; ``seccomp_fd`` holds :func:`seccomp.program`."""
    args = [
        _tool("bwrap"), "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent", "--new-session", "--hostname", "sandbox", "--dev", "/dev", "--proc", "/proc",
        "--seccomp", str(seccomp_fd),
    ]  # fmt: skip
    if drop_caps:
        args += ["--cap-drop", "ALL"]
    flags = {"ro": "--ro-bind", "rw": "--bind", "dev": "--dev-bind"}
    for m in mounts:
        if m.kind in flags:
            args += [flags[m.kind], str(m.src), m.dst]
        elif m.kind == "dir":
            args += ["--perms", f"{m.mode:04o}", "--dir", m.dst]
        else:
            args += ["--perms", f"{m.mode:04o}", "--size", str(m.size), "--tmpfs", m.dst]
    return args + ["--chdir", f"{SANDBOX_DIR}/scratch", "--"]


def walls_command(mounts: Sequence[Mount], *, new_root: Path) -> list[str]:
    """The ``unshare`` + ``walls`` prefix for ``mounts``; ``new_root`` is an empty directory of ours."""
    spec = {
        "root": str(new_root), "uid": UNPRIVILEGED_ID, "gid": UNPRIVILEGED_ID, "hostname": "sandbox",
        "chdir": f"{SANDBOX_DIR}/scratch", "devices": [m.dst for m in mounts if m.kind == "dev"],
        "mounts": [{k: v for k, v in asdict(m).items() if v is not None} for m in mounts if m.kind != "dev"],
    }  # fmt: skip
    return [
        _tool("unshare"), "--mount", "--net", "--pid", "--ipc", "--uts", "--cgroup", "--fork", "--kill-child",
        "--propagation", "private", "--", sys.executable, "-I", "-m", "quasar.evaluation.walls",
        json.dumps(spec, separators=(",", ":")), "--",
    ]  # fmt: skip


def setpriv_command() -> list[str]:
    return [
        _tool("setpriv"), f"--reuid={UNPRIVILEGED_ID}", f"--regid={UNPRIVILEGED_ID}", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
    ]  # fmt: skip


def wrapper_command(
    namespaces: str, mounts: Sequence[Mount], *, root: bool, seccomp_fd: int | None, new_root: Path | None
) -> list[str]:
    """The prefix that puts a command inside ``namespaces``' walls (empty for ``none``): the one
    place that chooses it, for runs and probes alike."""
    if namespaces == "bwrap":
        assert seccomp_fd is not None
        # As root, bwrap would hand the command every capability: setpriv drops them all as it
        # changes uid (it needs CAP_SETUID until then). Unprivileged, bwrap drops them itself.
        return bwrap_command(mounts, drop_caps=not root, seccomp_fd=seccomp_fd) + (
            setpriv_command() if root else []
        )
    if namespaces == "unshare":
        assert new_root is not None
        return walls_command(mounts, new_root=new_root)
    return []


# --- probing what works here ----------------------------------------------------------------------------
#: What a probe runs inside the walls: the interpreter, the package, a write to scratch, the identity.
_PROBE_SCRIPT = (
    "import os, quasar.evaluation.protocol; open('probe', 'w').write('ok'); "
    "print('uid', os.getuid(), 'pid', os.getpid())"
)
_probe_lock = threading.Lock()
_probe_ok: set[tuple[str, bool]] = set()
#: A failure is believed this long (seconds) before it is probed again: long enough not to retry and
#: log it for every run of an evaluation, short enough that fixing the host takes effect soon.
_FAILURE_TTL_S = 60.0
_probe_failed: dict[tuple[str, bool], tuple[float, str]] = {}


def _probe_once(namespaces: str, root: bool) -> str | None:
    """Run the probe through the real walls once; None on success, else what failed."""
    scratch = Path(tempfile.mkdtemp(prefix="quasar-probe-"))
    new_root = Path(tempfile.mkdtemp(prefix="quasar-probe-root-")) if namespaces == "unshare" else None
    seccomp_fd = seccomp.program_fd() if namespaces == "bwrap" else None
    try:
        if root:
            os.chown(scratch, UNPRIVILEGED_ID, UNPRIVILEGED_ID)
        mounts = layout(scratch, {}, gpu_index=None, tmp_bytes=16 * 2**20)
        command = wrapper_command(namespaces, mounts, root=root, seccomp_fd=seccomp_fd, new_root=new_root)
        command += [sys.executable, "-I", "-c", _PROBE_SCRIPT]
        try:
            done = subprocess.run(
                command, capture_output=True, timeout=60, cwd="/", env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                pass_fds=() if seccomp_fd is None else (seccomp_fd,),
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`{command[0]}` could not run: {exc}"
        expected_uid = UNPRIVILEGED_ID if root else os.getuid()
        output = done.stdout.decode(errors="replace").strip()
        if (
            done.returncode != 0
            or f"uid {expected_uid} pid" not in output
            or not (scratch / "probe").exists()
        ):
            stderr = done.stderr.decode(errors="replace").strip()[-600:] or "(no stderr)"
            log.warning("sandbox probe failed (%s, exit %s): %s\n  command: %s",
                        namespaces, done.returncode, stderr, " ".join(command[:40]))  # fmt: skip
            return f"`{command[0]}` exited {done.returncode}: {stderr}"
        return None
    finally:
        if seccomp_fd is not None:
            os.close(seccomp_fd)
        shutil.rmtree(scratch, ignore_errors=True)
        if new_root is not None:
            with contextlib.suppress(OSError):
                new_root.rmdir()


def probe(namespaces: str) -> str | None:
    """Whether ``namespaces`` ("bwrap" or "unshare") works here: None, or the failing step and its stderr.

    A success is remembered for the life of the process; a failure is retried once at once, then
    believed for a minute (so a validator recovers soon after the operator fixes the host)."""
    root = os.geteuid() == 0
    tool = "bwrap" if namespaces == "bwrap" else "unshare"
    if shutil.which(tool) is None:
        return f"`{tool}` is not on the PATH"
    if namespaces == "unshare" and not root:
        return "building the walls without bubblewrap needs root (CAP_SYS_ADMIN); the validator is not root"
    if not seccomp.supported():
        return "no seccomp filter for this machine's architecture (x86_64 and aarch64 have one)"
    key = (namespaces, root)
    with _probe_lock:
        if key in _probe_ok:
            return None
        if key in _probe_failed and time.monotonic() - _probe_failed[key][0] < _FAILURE_TTL_S:
            return _probe_failed[key][1]
        failure = _probe_once(namespaces, root)
        if failure is not None:
            failure = _probe_once(namespaces, root)
        if failure is None:
            _probe_ok.add(key)
            _probe_failed.pop(key, None)
        else:
            _probe_failed[key] = (time.monotonic(), failure)
        return failure


def forget_probes() -> None:
    """Probe again on the next :func:`detect` (after the host changed, and in tests)."""
    with _probe_lock:
        _probe_ok.clear()
        _probe_failed.clear()
    _cgroup_version.cache_clear()


@cache
def _cgroup_version(parent: str | None) -> str | None:
    probe_cgroup = cgroups.create(64 * 2**20, 16, parent)
    if probe_cgroup is None:
        return None
    probe_cgroup.remove()
    return f"v{probe_cgroup.version}"


def detect(
    *, require: Requirement = "namespaces", allow_unsandboxed: bool = False, cgroup_parent: str | None = None
) -> Mechanisms:
    """The mechanisms a run gets here, meeting ``require``; else :class:`SandboxUnavailable`."""
    if require not in REQUIREMENTS:
        raise SandboxUnavailable(f"SANDBOX_REQUIRE={require!r} is not one of {', '.join(REQUIREMENTS)}")
    root = os.geteuid() == 0
    warnings: list[str] = []
    bwrap_failure = probe("bwrap")
    namespaces = "bwrap"
    if bwrap_failure is not None:
        if require == "bwrap":
            raise SandboxUnavailable(
                f"SANDBOX_REQUIRE=bwrap, and bubblewrap cannot build the sandbox here: {bwrap_failure}. "
                f"Fix: {_FIX_BWRAP}. (SANDBOX_REQUIRE=namespaces also accepts the walls a root validator "
                "builds with unshare.)"
            )
        unshare_failure = probe("unshare")
        if unshare_failure is None:
            namespaces = "unshare"
            warnings.append(
                f"bubblewrap is not usable ({bwrap_failure}); the walls are built with unshare instead"
            )
        elif require == "namespaces" or not allow_unsandboxed or root:
            why = (
                "SANDBOX_REQUIRE=none runs miner code unisolated only with QUASAR_ALLOW_UNSANDBOXED=true, "
                "and never as root"
                if require == "none"
                else f"SANDBOX_REQUIRE={require}"
            )
            raise SandboxUnavailable(
                f"no sandbox can be built here ({why}). bubblewrap: {bwrap_failure}. unshare walls: "
                f"{unshare_failure}. Fix: {_FIX_BWRAP}; or {_FIX_UNSHARE}."
            )
        else:
            namespaces = "none"
            warnings.append(
                "INSECURE: SANDBOX_REQUIRE=none and QUASAR_ALLOW_UNSANDBOXED are set and no sandbox works: miner "
                "code runs with network access, this machine's file system and this user's rights"
            )
    version = _cgroup_version(cgroup_parent)
    if version is None:
        warnings.append(
            "no writable cgroup: processes capped by RLIMIT_NPROC (per user), memory by RLIMIT_AS on CPU only"
        )
    return Mechanisms(namespaces, version, root=root, warnings=warnings)


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

    #: The signal that ended the command. Both wrappers report it as exit status 128 + signal (their
    #: pid 1 cannot die of the command's signal), which is read back here.
    killed_by_signal: int | None = None
    #: The wrapper said it could not build the walls. Only meaningful before any untrusted code ran:
    #: a command can print the same words.
    walls_failed: bool = False


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


class Sandbox:
    """Runs commands under the mechanisms :func:`detect` finds. One instance serves many runs."""

    def __init__(
        self, limits: SandboxLimits | None = None, *, require: Requirement = "namespaces",
        allow_unsandboxed: bool = False, cgroup_parent: str | None = None, gpu_index: int | None = None,
    ) -> None:  # fmt: skip
        self.limits = limits or SandboxLimits()
        self.cgroup_parent = cgroup_parent
        self.gpu_index = gpu_index
        self.mechanisms = detect(
            require=require, allow_unsandboxed=allow_unsandboxed, cgroup_parent=cgroup_parent
        )

    def inside(self, name: str, host_path: Path) -> str:
        """Where ``host_path`` (mounted as ``name``) is seen by the command."""
        return str(host_path) if self.mechanisms.namespaces == "none" else f"{SANDBOX_DIR}/{name}"

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
            # glibc's allocator adapts its mmap and trim thresholds to what a process freed before,
            # which made one worker's kernel 30-45% slower than the same kernel in a worker with
            # another history (page faults on every large temporary). Fixed thresholds make a
            # kernel's speed independent of what ran before it in the process.
            "MALLOC_MMAP_THRESHOLD_": str(1 << 30),
            "MALLOC_TRIM_THRESHOLD_": str(1 << 32),
        }
        # The driver still numbers devices physically, so the pinned index is the physical one; only
        # that device's node is mounted, so naming another index would find nothing.
        env["CUDA_VISIBLE_DEVICES"] = "" if self.gpu_index is None else str(self.gpu_index)
        env.update(extra)
        return env

    def _preexec(self, run_cgroup: cgroups.RunCgroup | None, cpu_s: int) -> Callable[[], None]:
        limits = self.limits
        cap_address_space = run_cgroup is None and self.gpu_index is None
        cap_processes = run_cgroup is None
        die_with_parent = self.mechanisms.namespaces == "unshare"

        def setup() -> None:
            # Runs in the child between fork and exec: everything after it inherits these limits.
            if run_cgroup is not None:
                run_cgroup.join()
            if die_with_parent:
                # bwrap has --die-with-parent; unshare is told here.
                _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
            resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if cap_processes:
                # Counted per real user, so it binds the unprivileged user (root ignores it).
                resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_pids, limits.max_pids))
            if cap_address_space:
                resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))

        return setup

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
        for warning in self.mechanisms.warnings:
            log.warning("sandbox: %s", warning)
        if self.mechanisms.unprivileged_user:
            os.chown(scratch, UNPRIVILEGED_ID, UNPRIVILEGED_ID)
            for host in ro.values():
                # Read-only mounts keep their modes: make them readable by the unprivileged user.
                _make_world_readable(host)
        scratch.chmod(0o700)

        tmp_inside = "/tmp"
        if namespaces == "none":
            # No walls (SANDBOX_REQUIRE=none, never as root): a /tmp of its own under scratch at least.
            tmp_host = scratch / ".tmp"
            tmp_host.mkdir(exist_ok=True)
            tmp_inside = str(tmp_host)
        seccomp_fd = seccomp.program_fd() if namespaces == "bwrap" else None
        extra_fds = [] if seccomp_fd is None else [seccomp_fd]
        new_root = Path(tempfile.mkdtemp(prefix="quasar-sandbox-root-")) if namespaces == "unshare" else None
        mounts = layout(scratch, ro, gpu_index=self.gpu_index, tmp_bytes=self.limits.tmp_bytes)
        command = wrapper_command(
            namespaces, mounts, root=self.mechanisms.root, seccomp_fd=seccomp_fd, new_root=new_root
        ) + list(argv)

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
                pass_fds=(*pass_fds, *extra_fds), start_new_session=True,
                preexec_fn=self._preexec(run_cgroup, cpu_s),
            )  # fmt: skip
        except BaseException:
            os.close(read_end)
            if run_cgroup is not None:
                run_cgroup.remove()
            if new_root is not None:
                new_root.rmdir()
            raise
        finally:
            os.close(write_end)
            for fd in extra_fds:
                os.close(fd)
        reader = _TailReader(read_end, limits.output_bytes)
        reader.start()
        return SandboxProcess(proc, reader, run_cgroup, scratch, limits, wall, self.mechanisms, new_root)


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


class FreezeFailed(Exception):
    """The processes of a run could not all be stopped."""


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (or gone): state ``T``, ``t``, ``Z`` or ``X``."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                # "pid (comm) state ...": comm may hold spaces and parentheses; the state follows the last ')'.
                state = f.read().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state not in "TtZX":
            return False
    return True


class SandboxProcess:
    """A running sandboxed command: its stdin, its deadline, and :meth:`finish` to end and clean up."""

    def __init__(
        self, proc: subprocess.Popen[bytes], reader: _TailReader, run_cgroup: cgroups.RunCgroup | None,
        scratch: Path, limits: SandboxLimits, wall_s: float, mechanisms: Mechanisms,
        new_root: Path | None = None,
    ) -> None:  # fmt: skip
        self.proc = proc
        self._new_root = new_root
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
        self._stopped: set[int] = set()
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
        """SIGKILL the whole tree: the wrapper's process group (its PID namespace's init is in it, and
        every process of the namespace dies with that), and every process in the run's cgroup."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._cgroup is not None:
            self._cgroup.kill_all()

    def processes(self) -> set[int]:
        """Every process of the run as the host sees it: the wrapper and all its descendants (in a PID
        namespace an orphan is adopted by the namespace's init, so it stays among them), and every
        member of the run's cgroup."""
        found = {self.proc.pid}
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{pid}/task"):
                    with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                        for child in map(int, f.read().split()):
                            if child not in found:
                                found.add(child)
                                todo.append(child)
        if self._cgroup is not None:
            found |= self._cgroup.pids()
        return found

    def freeze(self, timeout_s: float = 5.0) -> None:
        """Stop every process of the run (SIGSTOP, which no process can catch or ignore) and return
        once every thread of each one is stopped; a process forked meanwhile is found on a later pass.
        Raises :class:`FreezeFailed` if the run cannot be stopped within ``timeout_s``."""
        stopped: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while True:
            current = self.processes()
            for pid in current - stopped:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGSTOP)
            stopped |= current
            self._stopped = stopped
            if all(_all_threads_stopped(pid) for pid in current) and self.processes() <= stopped:
                return
            if time.monotonic() > deadline:
                raise FreezeFailed(
                    f"the run's {len(current)} processes did not all stop in {timeout_s:.0f} s"
                )

    def thaw(self) -> None:
        """Let every process stopped by :meth:`freeze` run again."""
        for pid in self._stopped | self.processes():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGCONT)
        self._stopped = set()

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
        returncode = self.proc.returncode
        namespaces = self._mechanisms.namespaces
        sig = -returncode if returncode < 0 else None
        if namespaces != "none" and 128 < returncode < 128 + signal.NSIG:
            sig = returncode - 128
        tail = self._reader.tail()
        walls_failed = (
            namespaces == "unshare" and returncode == WALLS_FAILED and b"sandbox walls: " in tail
        ) or (namespaces == "bwrap" and returncode == 1 and tail.lstrip().startswith(b"bwrap: "))
        if self._new_root is not None:
            with contextlib.suppress(OSError):
                self._new_root.rmdir()  # only ever a mount point inside the walls' namespace: empty here
        result = SandboxResult(
            returncode=returncode, wall_s=wall, timed_out=self.timed_out, killed_by_signal=sig,
            walls_failed=walls_failed, output=tail, output_truncated=self._reader.total > self._limits.output_bytes,
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
