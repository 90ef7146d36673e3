"""GPU memory the evaluation parent owns and a sandboxed worker maps: CUDA driver virtual memory.

torch's CUDA IPC handles do not cross PID namespaces; the driver's virtual-memory API can export
an allocation as a POSIX file descriptor, which passes into the sandbox like any other inherited
descriptor (measured on an H200: maps in ~27 ms, full bandwidth; ``docs/benchmarks.md``).

``SharedDeviceMemory.create(nbytes, device)`` allocates and exports (the parent);
``SharedDeviceMemory.attach(fd, nbytes, device)`` imports and maps (the worker). Either way
``.tensor`` is a ``uint8`` CUDA tensor over the whole allocation; callers view slices of it as the
dtypes they need. Only the driver calls are here, through ctypes; the context is torch's, so torch
must have initialised CUDA on ``device`` first. Imported by the parent and by the sandboxed worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os

import torch

_POSIX_FD = 1  # CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR
_LOCATION_DEVICE = 1  # CU_MEM_LOCATION_TYPE_DEVICE
_ALLOCATION_PINNED = 1  # CU_MEM_ALLOCATION_TYPE_PINNED
_ACCESS_READWRITE = 3  # CU_MEM_ACCESS_FLAGS_PROT_READWRITE


class _Location(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("id", ctypes.c_int)]


class _AllocFlags(ctypes.Structure):
    _fields_ = [
        ("compressionType", ctypes.c_ubyte), ("gpuDirectRDMACapable", ctypes.c_ubyte),
        ("usage", ctypes.c_ushort), ("reserved", ctypes.c_ubyte * 4),
    ]  # fmt: skip


class _Prop(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int), ("requestedHandleTypes", ctypes.c_int), ("location", _Location),
        ("win32HandleMetaData", ctypes.c_void_p), ("allocFlags", _AllocFlags),
    ]  # fmt: skip


class _Access(ctypes.Structure):
    _fields_ = [("location", _Location), ("flags", ctypes.c_int)]


class DeviceMemoryError(RuntimeError):
    """A driver call failed; the message names it and the CUDA error number."""


def _driver() -> ctypes.CDLL:
    return ctypes.CDLL("libcuda.so.1")


def _check(result: int, what: str) -> None:
    if result != 0:
        raise DeviceMemoryError(f"{what} failed with CUDA driver error {result}")


def _ordinal(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def _prop(ordinal: int) -> _Prop:
    prop = _Prop()
    prop.type, prop.requestedHandleTypes = _ALLOCATION_PINNED, _POSIX_FD
    prop.location = _Location(_LOCATION_DEVICE, ordinal)
    return prop


def granularity(device: torch.device) -> int:
    """The size every allocation is rounded up to on ``device``."""
    gran = ctypes.c_size_t()
    prop = _prop(_ordinal(device))
    _check(_driver().cuMemGetAllocationGranularity(ctypes.byref(gran), ctypes.byref(prop), 0), "granularity")
    return gran.value


class SharedDeviceMemory:
    """One exported (or imported) allocation, mapped read-write on one device."""

    def __init__(self, handle: int, ptr: int, nbytes: int, fd: int, device: torch.device) -> None:
        self.handle, self.ptr, self.nbytes, self.fd, self.device = handle, ptr, nbytes, fd, device
        self.tensor = _as_uint8_tensor(ptr, nbytes, device)

    @classmethod
    def create(cls, nbytes: int, device: torch.device) -> SharedDeviceMemory:
        """Allocate at least ``nbytes`` on ``device`` and export it as a file descriptor."""
        cu, ordinal = _driver(), _ordinal(device)
        gran = granularity(device)
        size = -(-nbytes // gran) * gran
        handle = ctypes.c_ulonglong()
        prop = _prop(ordinal)
        _check(cu.cuMemCreate(ctypes.byref(handle), ctypes.c_size_t(size), ctypes.byref(prop),
                              ctypes.c_ulonglong(0)), "cuMemCreate")  # fmt: skip
        fd = ctypes.c_int(-1)
        try:
            _check(cu.cuMemExportToShareableHandle(ctypes.byref(fd), handle, _POSIX_FD, ctypes.c_ulonglong(0)),
                   "cuMemExportToShareableHandle")  # fmt: skip
            ptr = _map(cu, handle, size, ordinal)
        except BaseException:
            cu.cuMemRelease(handle)
            if fd.value >= 0:
                os.close(fd.value)
            raise
        return cls(handle.value, ptr, size, fd.value, device)

    @classmethod
    def attach(cls, fd: int, nbytes: int, device: torch.device) -> SharedDeviceMemory:
        """The worker's side: import the inherited descriptor ``fd`` and map ``nbytes`` of it."""
        cu, ordinal = _driver(), _ordinal(device)
        handle = ctypes.c_ulonglong()
        _check(cu.cuMemImportFromShareableHandle(ctypes.byref(handle), ctypes.c_void_p(fd), _POSIX_FD),
               "cuMemImportFromShareableHandle")  # fmt: skip
        try:
            ptr = _map(cu, handle, nbytes, ordinal)
        except BaseException:
            cu.cuMemRelease(handle)
            raise
        return cls(handle.value, ptr, nbytes, fd, device)

    def close(self) -> None:
        """Unmap and release; the descriptor is closed too. Every view of ``tensor`` must be gone."""
        cu = _driver()
        del self.tensor
        torch.cuda.synchronize(self.device)
        cu.cuMemUnmap(ctypes.c_ulonglong(self.ptr), ctypes.c_size_t(self.nbytes))
        cu.cuMemAddressFree(ctypes.c_ulonglong(self.ptr), ctypes.c_size_t(self.nbytes))
        cu.cuMemRelease(ctypes.c_ulonglong(self.handle))
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _map(cu: ctypes.CDLL, handle: ctypes.c_ulonglong, nbytes: int, ordinal: int) -> int:
    ptr = ctypes.c_ulonglong()
    _check(cu.cuMemAddressReserve(ctypes.byref(ptr), ctypes.c_size_t(nbytes), ctypes.c_size_t(0),
                                  ctypes.c_ulonglong(0), ctypes.c_ulonglong(0)), "cuMemAddressReserve")  # fmt: skip
    try:
        _check(cu.cuMemMap(ptr, ctypes.c_size_t(nbytes), ctypes.c_size_t(0), handle, ctypes.c_ulonglong(0)),
               "cuMemMap")  # fmt: skip
        access = _Access(_Location(_LOCATION_DEVICE, ordinal), _ACCESS_READWRITE)
        _check(cu.cuMemSetAccess(ptr, ctypes.c_size_t(nbytes), ctypes.byref(access), ctypes.c_size_t(1)),
               "cuMemSetAccess")  # fmt: skip
    except BaseException:
        cu.cuMemUnmap(ptr, ctypes.c_size_t(nbytes))
        cu.cuMemAddressFree(ptr, ctypes.c_size_t(nbytes))
        raise
    return ptr.value


def _as_uint8_tensor(ptr: int, nbytes: int, device: torch.device) -> torch.Tensor:
    class _Interface:
        __cuda_array_interface__ = {"shape": (nbytes,), "typestr": "|u1", "data": (ptr, False), "version": 3}

    return torch.as_tensor(_Interface(), device=device)
