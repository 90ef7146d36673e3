"""Process and memory caps for one sandboxed run, from a cgroup (v2 where delegated, else v1).

Root ignores RLIMIT_NPROC, and RLIMIT_AS breaks CUDA (it reserves huge address ranges), so the caps
that hold for any user are a cgroup's ``pids.max`` and ``memory.max``. A run gets its own child
cgroup; the child process joins it before it executes anything (``join`` runs in ``preexec_fn``), so
every process the submission starts is counted and can be killed together (``kill_all``), even one
that left the process group with ``setsid``.

Where the cgroup comes from, first that works:

1. ``SANDBOX_CGROUP_PARENT``: a cgroup v2 directory delegated to the validator (e.g. by systemd's
   ``Delegate=yes``) with ``pids`` and ``memory`` in its ``cgroup.subtree_control``;
2. the validator's own cgroup v2, when ``pids`` and ``memory`` are enabled for its children;
3. cgroup v1 ``pids`` and ``memory`` hierarchies that this process may write (old hosts, some VMs).

Without any of them :func:`create` returns None and the sandbox falls back to an unprivileged user.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _own_cgroups() -> dict[str, str]:
    """``{controller or "" for v2: path}`` from /proc/self/cgroup."""
    found: dict[str, str] = {}
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            found[""] = path
        for controller in controllers.split(","):
            if controller:
                found[controller] = path
    return found


def _events(path: Path, key: str) -> int:
    for line in _read(path).splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            with contextlib.suppress(ValueError):
                return int(value)
    return 0


@dataclass
class RunCgroup:
    """The cgroup(s) of one run: one v2 directory, or a v1 ``pids`` and a v1 ``memory`` directory."""

    version: int
    dirs: list[Path]
    memory_bytes: int
    max_pids: int
    _removed: bool = field(default=False, repr=False)

    @property
    def description(self) -> str:
        return f"cgroup v{self.version} (pids.max={self.max_pids}, memory={self.memory_bytes // 2**20} MiB)"

    def join(self) -> None:
        """Move the calling process into the run's cgroup(s). Runs in the child before exec."""
        pid = str(os.getpid())
        for d in self.dirs:
            (d / "cgroup.procs").write_text(pid)

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            for token in _read(d / "cgroup.procs").split():
                with contextlib.suppress(ValueError):
                    found.add(int(token))
        return found

    def kill_all(self, timeout_s: float = 10.0) -> None:
        """SIGKILL every process in the cgroup until it is empty (new forks are caught on later passes)."""
        if self.version == 2 and (self.dirs[0] / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (self.dirs[0] / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def memory_exceeded(self) -> bool:
        if self.version == 2:
            return (
                _events(self.dirs[0] / "memory.events", "oom_kill") > 0
                or _events(self.dirs[0] / "memory.events", "max") > 0
                and _events(self.dirs[0] / "memory.events", "oom") > 0
            )
        memory = self.dirs[1]
        return (
            _events(memory / "memory.oom_control", "oom_kill") > 0
            or int(_read(memory / "memory.failcnt") or 0) > 0
        )

    def pids_exceeded(self) -> bool:
        d = self.dirs[0]
        return _events(d / "pids.events", "max") > 0

    def peak_memory_mb(self) -> float | None:
        d = self.dirs[0] if self.version == 2 else self.dirs[1]
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        text = _read(d / name).strip()
        return int(text) / 2**20 if text.isdigit() else None

    def remove(self) -> None:
        if self._removed:
            return
        self.kill_all(timeout_s=5.0)
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        self._removed = True


def _try_v2(parent: Path, memory_bytes: int, max_pids: int) -> RunCgroup | None:
    if not (parent / "cgroup.subtree_control").exists():
        return None
    enabled = set(_read(parent / "cgroup.subtree_control").split())
    if not {"pids", "memory"} <= enabled:
        return None
    child = parent / f"quasar-sandbox-{secrets.token_hex(6)}"
    try:
        child.mkdir()
        (child / "pids.max").write_text(str(max_pids))
        (child / "memory.max").write_text(str(memory_bytes))
        if (child / "memory.swap.max").exists():
            (child / "memory.swap.max").write_text("0")
    except OSError:
        with contextlib.suppress(OSError):
            child.rmdir()
        return None
    return RunCgroup(2, [child], memory_bytes, max_pids)


def _try_v1(own: dict[str, str], memory_bytes: int, max_pids: int) -> RunCgroup | None:
    if "pids" not in own or "memory" not in own:
        return None
    name = f"quasar-sandbox-{secrets.token_hex(6)}"
    pids_dir = CGROUP_ROOT / "pids" / own["pids"].lstrip("/") / name
    memory_dir = CGROUP_ROOT / "memory" / own["memory"].lstrip("/") / name
    made: list[Path] = []
    try:
        for d in (pids_dir, memory_dir):
            d.mkdir()
            made.append(d)
        (pids_dir / "pids.max").write_text(str(max_pids))
        (memory_dir / "memory.limit_in_bytes").write_text(str(memory_bytes))
        if (memory_dir / "memory.memsw.limit_in_bytes").exists():
            with contextlib.suppress(OSError):
                (memory_dir / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
    except OSError:
        for d in reversed(made):
            with contextlib.suppress(OSError):
                d.rmdir()
        return None
    return RunCgroup(1, [pids_dir, memory_dir], memory_bytes, max_pids)


def create(memory_bytes: int, max_pids: int, parent: str | Path | None = None) -> RunCgroup | None:
    """A fresh cgroup for one run with these caps, or None when no writable cgroup is available."""
    if parent is not None:
        return _try_v2(Path(parent), memory_bytes, max_pids)
    own = _own_cgroups()
    if "" in own:
        found = _try_v2(CGROUP_ROOT / own[""].lstrip("/"), memory_bytes, max_pids)
        if found is None and (CGROUP_ROOT / "unified").is_dir():
            found = _try_v2(CGROUP_ROOT / "unified" / own[""].lstrip("/"), memory_bytes, max_pids)
        if found is not None:
            return found
    return _try_v1(own, memory_bytes, max_pids)
