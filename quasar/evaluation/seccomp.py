"""The seccomp filter every sandboxed command runs under: no new user namespaces, no foreign syscall ABIs.

Without a user namespace of its own, a process that dropped its capabilities cannot mount, chroot or
change uid again; with one it could (inside it), which is both a way round our walls' assumptions and
the kernel's largest attack surface for unprivileged code. So the filter refuses ``unshare`` and
``clone`` with ``CLONE_NEWUSER`` (``EPERM``) and ``clone3`` (``ENOSYS``: its flags live in memory a
filter cannot read, and glibc then falls back to ``clone``). Syscalls through another ABI (i386's
``int 0x80``, x32) are refused too, since the numbers above would not match them.

Both sandbox paths install the same program: bubblewrap reads it from ``--seccomp FD``; the walls
helper loads it itself with ``prctl``. Standard library only (the helper imports it).
"""

from __future__ import annotations

import errno
import os
import platform
import struct

# Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000

CLONE_NEWUSER = 0x10000000
_X32_BIT = 0x40000000

# (audit arch, unshare, clone, clone3) per machine; seccomp_data is {nr, arch, ip, args[6]}.
_ARCHES = {
    "x86_64": (0xC000003E, 272, 56, 435),
    "aarch64": (0xC00000B7, 97, 220, 435),
}
_NR, _ARCH, _ARG0_LOW = 0, 4, 16  # offsets in struct seccomp_data (little-endian)


class SeccompUnsupported(RuntimeError):
    """This machine's architecture has no filter here; the sandbox refuses rather than run without it."""


def supported() -> bool:
    return platform.machine() in _ARCHES


def program() -> bytes:
    """The filter as ``struct sock_filter[]`` bytes (what ``bwrap --seccomp`` reads)."""
    machine = platform.machine()
    if machine not in _ARCHES:
        raise SeccompUnsupported(f"no seccomp filter for {machine}; the sandbox supports x86_64 and aarch64")
    arch, nr_unshare, nr_clone, nr_clone3 = _ARCHES[machine]
    eperm, enosys = _RET_ERRNO | errno.EPERM, _RET_ERRNO | errno.ENOSYS
    # Each row: (code, jump-if-true target, jump-if-false target, k); targets are labels or None (next).
    rows: list[tuple[int, str | None, str | None, int]] = [
        (_LD_W_ABS, None, None, _ARCH),
        (_JEQ_K, None, "enosys", arch),
        (_LD_W_ABS, None, None, _NR),
    ]
    if machine == "x86_64":
        rows.append((_JGE_K, "enosys", None, _X32_BIT))
    rows += [
        (_JEQ_K, "flags", None, nr_unshare),
        (_JEQ_K, "flags", None, nr_clone),
        (_JEQ_K, "enosys", None, nr_clone3),
        (_RET_K, None, None, _RET_ALLOW),
    ]
    labels = {"flags": len(rows)}
    rows += [
        (_LD_W_ABS, None, None, _ARG0_LOW),
        (_JSET_K, "eperm", None, CLONE_NEWUSER),
        (_RET_K, None, None, _RET_ALLOW),
    ]
    labels["eperm"] = len(rows)
    rows.append((_RET_K, None, None, eperm))
    labels["enosys"] = len(rows)
    rows.append((_RET_K, None, None, enosys))

    out = bytearray()
    for index, (code, if_true, if_false, k) in enumerate(rows):
        jt = 0 if if_true is None else labels[if_true] - index - 1
        jf = 0 if if_false is None else labels[if_false] - index - 1
        out += struct.pack("=HBBI", code, jt, jf, k)
    return bytes(out)


def program_fd() -> int:
    """A readable file descriptor holding :func:`program` (for ``bwrap --seccomp FD``); caller closes it."""
    fd = os.memfd_create("quasar-seccomp", 0)
    os.write(fd, program())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
