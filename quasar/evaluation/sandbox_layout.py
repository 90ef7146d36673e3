"""What a sandboxed run is given: its limits, its file system and the command lines that build its walls (bubblewrap, or unshare and
``walls`` as root), the one place each is decided, for runs and probes alike. Used by the
evaluation parent (``sandbox``, ``sandbox_probe``)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)


class SandboxUnavailable(RuntimeError):
    """The required isolation cannot be built here; the message names the failing step and the fix."""


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
