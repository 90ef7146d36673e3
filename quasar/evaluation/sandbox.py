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

Its parts: ``sandbox_layout`` (the mounts and the wrapper command lines), ``sandbox_probe`` (what
works here: ``detect``), ``sandbox_process`` (a started command: freeze, thaw, kill, finish).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import signal
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from . import cgroup as cgroups
from . import seccomp
from .sandbox_layout import (
    SANDBOX_DIR,
    UNPRIVILEGED_ID,
    Mount,
    SandboxLimits,
    SandboxUnavailable,
    layout,
    wrapper_command,
)
from .sandbox_probe import REQUIREMENTS, Mechanisms, Requirement, detect, forget_probes, probe
from .sandbox_process import FreezeFailed, OutputTail, SandboxProcess, SandboxResult

log = logging.getLogger(__name__)

__all__ = [
    "REQUIREMENTS", "SANDBOX_DIR", "UNPRIVILEGED_ID", "FreezeFailed", "Mechanisms", "Mount", "Requirement",
    "Sandbox", "SandboxLimits", "SandboxProcess", "SandboxResult", "SandboxUnavailable", "detect",
    "forget_probes", "layout", "probe", "run", "wrapper_command",
]  # fmt: skip

#: Resolved in the parent: loading a library between fork and exec can deadlock on the loader's lock.
_prctl = ctypes.CDLL(None).prctl
_PR_SET_PDEATHSIG = 1


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
        reader = OutputTail(read_end, limits.output_bytes)
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
