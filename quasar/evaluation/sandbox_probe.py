"""What isolation works on this machine: each kind of walls probed by running a real command
through them, and ``detect``, which meets the operator's ``SANDBOX_REQUIRE`` or says in one line
what failed and how to fix it. Used by the evaluation parent, the validator and the miner's bench."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

from . import cgroup as cgroups
from . import seccomp
from .sandbox_layout import UNPRIVILEGED_ID, SandboxUnavailable, layout, wrapper_command

log = logging.getLogger(__name__)

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
