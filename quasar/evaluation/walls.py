"""The sandbox's walls without bubblewrap: built as root inside fresh namespaces, then root is dropped.

Runs as ``unshare --mount --net --pid --ipc --uts --cgroup --fork --kill-child --propagation private
-- python -I -m quasar.evaluation.walls SPEC -- ARGV...``, so this process is pid 1 of a new PID
namespace with a private mount namespace (nothing it mounts is seen by the host). ``SPEC`` is the
JSON form of the sandbox's ``Layout``: the same read-only system and interpreter paths, private
``/tmp`` and run directories that bubblewrap would be given. Here we:

1. mount a tmpfs as the new root and build the layout in it (binds remounted read-only, nosuid and
   nodev; a minimal ``/dev`` with only the evaluation's GPU nodes; a ``/proc`` of the new PID
   namespace; a non-recursive read-only ``/sys``), then ``pivot_root`` into it and detach the host's
   tree, so ``/run``, ``/home``, ``/root``, other evaluations and the validator's state do not exist;
2. fork the command, which drops every capability (bounding set included), all groups, becomes
   uid/gid 65534 with ``no_new_privs``, loads the seccomp filter (``seccomp``: no user namespaces),
   checks in ``/proc/self/status`` that all of it took, and only then execs ``ARGV``;
3. stay as the namespace's reaper with no capabilities, and exit with the command's status
   (``128 + signal`` when a signal killed it, as bubblewrap reports it).

Any step that fails ends the run with status 125 and one line on stderr naming the step: the walls
are never partly built. Standard library only; Linux only; needs CAP_SYS_ADMIN (real root).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import re
import socket
import sys
from pathlib import Path

from . import seccomp

#: Exit status when the walls could not be built (bubblewrap uses 1; 125 is "the wrapper failed").
WALLS_FAILED = 125

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_MNT_DETACH = 2
_PR_SET_NO_NEW_PRIVS, _PR_CAPBSET_DROP, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 24, 22, 2
_SYSCALLS = {"x86_64": {"pivot_root": 155, "capset": 126}, "aarch64": {"pivot_root": 41, "capset": 91}}
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
#: Device nodes every process expects; bound from the host one by one (no other host device is seen).
_BASIC_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

_libc = ctypes.CDLL(None, use_errno=True)


class WallError(RuntimeError):
    """A step of building the walls failed; the message names it."""


def _check(result: int, step: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise WallError(f"{step}: {os.strerror(code)} (errno {errno.errorcode.get(code, code)})")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = lambda s: None if s is None else s.encode()  # noqa: E731
    result = _libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data))
    _check(result, f"mount {source or fstype or ''} on {target}")


def _syscall(name: str, *args: object) -> int:
    return _libc.syscall(_SYSCALLS[platform.machine()][name], *args)


# --- building the new root ---------------------------------------------------------------------------
def _make_mount_point(source: str, target: str) -> None:
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    if os.path.isdir(source):
        os.makedirs(target, mode=0o755, exist_ok=True)
    elif not os.path.exists(target):
        with open(target, "w"):
            pass


def _mounts_at_or_below(target: str) -> list[str]:
    """Mount points at ``target`` or below it, parents first (from /proc/self/mountinfo)."""
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            # Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point == target or point.startswith(target.rstrip("/") + "/"):
                found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"))


def _bind(source: str, target: str, flags: int, *, recursive: bool = True) -> None:
    """Bind ``source`` (with its submounts, as bubblewrap does, unless ``recursive`` is off) and
    remount every mount of the bind with ``flags``."""
    if os.path.islink(source):
        # /bin -> usr/bin on merged-/usr systems: the same link, resolved inside the new root.
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        os.symlink(os.readlink(source), target)
        return
    _make_mount_point(source, target)
    _mount(source, target, None, _MS_BIND | (_MS_REC if recursive else 0))
    # A bind ignores flags given with it: they only take in a remount, one mount at a time (a GPU
    # host's driver under /usr/local/nvidia is a mount of its own below /usr).
    for point in _mounts_at_or_below(target) if recursive else [target]:
        _mount(None, point, None, _MS_REMOUNT | _MS_BIND | flags)


def _build_dev(root: str, gpu_nodes: list[str]) -> None:
    dev = root + "/dev"
    os.makedirs(dev, mode=0o755, exist_ok=True)
    _mount("tmpfs", dev, "tmpfs", _MS_NOSUID | _MS_NOEXEC, "mode=0755,size=1m")
    for name in _BASIC_DEVICES:
        if os.path.exists(f"/dev/{name}"):
            _bind(f"/dev/{name}", f"{dev}/{name}", _MS_NOSUID | _MS_NOEXEC, recursive=False)
    for node in gpu_nodes:
        _bind(node, root + node, _MS_NOSUID | _MS_NOEXEC, recursive=os.path.isdir(node))
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):  # fmt: skip
        os.symlink(target, f"{dev}/{name}")
    os.makedirs(f"{dev}/shm", mode=0o755)
    _mount("tmpfs", f"{dev}/shm", "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "mode=1777,size=64m")


def build_root(spec: dict) -> None:
    """Build ``spec``'s layout on a fresh tmpfs at ``spec['root']`` and make it this namespace's ``/``."""
    root = spec["root"]
    # Nothing mounted from here on may propagate back to the host's mount namespace.
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    _mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=16m")
    for entry in spec["mounts"]:
        kind, target = entry["kind"], root + entry["dst"]
        if kind == "ro":
            _bind(
                entry["src"],
                target,
                _MS_RDONLY | _MS_NOSUID | _MS_NODEV,
                recursive=entry.get("recursive", True),
            )
        elif kind == "rw":
            _bind(entry["src"], target, _MS_NOSUID | _MS_NODEV, recursive=False)
        elif kind == "dir":
            os.makedirs(target, mode=0o755, exist_ok=True)
            os.chmod(target, entry.get("mode", 0o755))
        elif kind == "tmpfs":
            os.makedirs(target, mode=0o755, exist_ok=True)
            size = entry.get("size", 64 * 2**20)
            _mount("tmpfs", target, "tmpfs", _MS_NOSUID | _MS_NODEV, f"mode=1777,size={size}")
        else:
            raise WallError(f"unknown mount kind {kind!r} in the layout")
    _build_dev(root, spec.get("devices", []))
    os.makedirs(root + "/proc", mode=0o555, exist_ok=True)
    # This process is pid 1 of the new PID namespace: the fresh /proc shows only the sandbox's processes.
    _mount("proc", root + "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    os.chdir(root)
    _check(_syscall("pivot_root", b".", b"."), "pivot_root into the new root")
    # The old root is stacked under the new one at "/": detach it, and the host's tree is gone.
    _check(_libc.umount2(b".", _MNT_DETACH), "detach the host's root")
    os.chdir("/")
    _mount(None, "/", None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    socket.sethostname(spec.get("hostname", "sandbox"))


# --- dropping privileges -------------------------------------------------------------------------------
class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _clear_capabilities() -> None:
    """Empty the effective, permitted and inheritable sets (setuid alone keeps the inheritable one)."""
    header, data = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    _check(_syscall("capset", ctypes.byref(header), ctypes.byref(data)), "drop all capabilities")


def _drop_bounding_set() -> None:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        _check(_libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap} from the bounding set")


def _load_seccomp(program: bytes) -> None:
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
    _check(
        _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0),
        "load the seccomp filter",
    )


def become_unprivileged(uid: int, gid: int, program: bytes) -> None:
    """Drop to ``uid``/``gid`` for good: no groups, no capabilities, no new privileges, the filter on."""
    _drop_bounding_set()  # needs CAP_SETPCAP, so before the uid changes
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _clear_capabilities()
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs")
    _load_seccomp(program)
    verify_unprivileged(uid, gid)


def verify_unprivileged(uid: int, gid: int) -> None:
    """Read back from the kernel what :func:`become_unprivileged` asked for; raise if any of it is missing."""
    status = dict(
        line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line
    )
    field = lambda name: status.get(name, "").split()  # noqa: E731
    wanted = {
        "Uid": [str(uid)] * 4, "Gid": [str(gid)] * 4, "Groups": [], "NoNewPrivs": ["1"], "Seccomp": ["2"],
        **{name: ["0" * 16] for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
    }  # fmt: skip
    wrong = [
        f"{name} is {' '.join(field(name)) or '(missing)'}"
        for name, want in wanted.items()
        if field(name) != want
    ]
    if wrong:
        raise WallError("the dropped privileges did not take: " + "; ".join(wrong))


# --- pid 1 -----------------------------------------------------------------------------------------------
def _reap_until(child: int) -> int:
    """Reap every orphan of the namespace until ``child`` ends; return its status the shell's way."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return WALLS_FAILED
        except InterruptedError:
            continue
        if pid == child:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)


def _fail(message: str) -> None:
    os.write(2, f"sandbox walls: {message}\n".encode())
    os._exit(WALLS_FAILED)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        _fail("usage: python -m quasar.evaluation.walls SPEC_JSON -- COMMAND...")
    command = argv[2:]
    try:
        spec = json.loads(argv[0])
        if os.getpid() != 1:
            raise WallError("not pid 1 of a new PID namespace (run under unshare --pid --fork)")
        program = seccomp.program()
        build_root(spec)
    except (WallError, OSError, ValueError, KeyError, seccomp.SeccompUnsupported) as exc:
        _fail(str(exc))
    uid, gid = spec["uid"], spec["gid"]
    child = os.fork()
    if child == 0:
        step = "drop privileges"
        try:
            os.setsid()  # no terminal to push input into, and out of the namespace init's group
            become_unprivileged(uid, gid, program)
            step = f"enter {spec.get('chdir', '/')}"
            os.chdir(spec.get("chdir", "/"))
            step = f"execute {command[0]}"
            os.execvp(command[0], command)
        except (WallError, OSError) as exc:
            _fail(f"{step}: {exc}")
    # The reaper keeps uid 0 (so unshare's parent-death signal still reaches it) but no capabilities,
    # and none of the pipes: the command's end of them closes when the command ends.
    try:
        _drop_bounding_set()
        _clear_capabilities()
    except WallError as exc:
        os.kill(child, 9)
        _fail(str(exc))
    os.closerange(3, 65536)
    os._exit(_reap_until(child))


if __name__ == "__main__":
    main(sys.argv[1:])
