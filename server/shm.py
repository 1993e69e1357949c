"""The same-host fast path: tensors in POSIX shared memory, named by the request instead of sent.

Off unless the server is given a name prefix (``--shm-prefix``). Only names that start with it and
consist of letters, digits, ``_``, ``.`` and ``-`` are opened, under /dev/shm with O_NOFOLLOW, so a
request can never make the server open anything else. Input regions are mapped read-only; output
regions (named in ``output_shm``) are mapped for writing. Every size is checked against the object
before it is mapped.
"""

from __future__ import annotations

import mmap
import os
import re
import stat
import threading
from collections import OrderedDict

import torch

from lossd.losses.errors import invalid
from lossd.v1 import loss_service_pb2 as pb

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_SHM_DIR = "/dev/shm"


class SharedMemoryAccess:
    """Maps the regions requests name, within ``prefix`` (empty: the fast path is off)."""

    def __init__(self, prefix: str, cached_mappings: int = 64) -> None:
        if prefix and not _NAME.fullmatch(prefix):
            raise ValueError(f"shared-memory prefix {prefix!r}: use letters, digits, '_', '.', '-' only")
        self.prefix = prefix
        # Clients reuse their regions call after call: keeping the mappings saves re-populating the page
        # tables of every byte on every call. Keyed by name and checked against the object's inode and
        # size, so a region that was unlinked and made anew is mapped anew.
        self._cache: OrderedDict[tuple[str, bool], tuple[int, int, mmap.mmap]] = OrderedDict()
        self._cached_mappings = cached_mappings
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether this server accepts shared-memory regions."""
        return bool(self.prefix)

    def _open(self, region: pb.SharedRegion, where: str, nbytes: int, writable: bool) -> mmap.mmap:
        if not self.enabled:
            raise invalid(where, "shared memory is off on this server (start it with --shm-prefix); "
                          "send raw_data instead")
        name = region.name
        if not (_NAME.fullmatch(name) and name.startswith(self.prefix) and name not in (".", "..")):
            raise invalid(f"{where}.name", f"{name!r} is not a shared-memory name this server opens; expected "
                          f"letters, digits, '_', '.', '-' starting with {self.prefix!r}")
        if region.size != nbytes:
            raise invalid(f"{where}.size", f"{region.size} bytes, but the tensor needs {nbytes}")
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(os.path.join(_SHM_DIR, name), flags)
        except OSError as exc:
            raise invalid(f"{where}.name", f"cannot open shared memory {name!r}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise invalid(f"{where}.name", f"{name!r} is not a shared-memory object")
            if region.offset + nbytes > info.st_size:
                raise invalid(f"{where}.offset", f"[{region.offset}, {region.offset + nbytes}) runs past the end "
                              f"of {name!r} ({info.st_size} bytes)")
            if info.st_size == 0:
                raise invalid(f"{where}.name", f"{name!r} is empty")
            key = (name, writable)
            with self._lock:
                cached = self._cache.get(key)
                if cached is not None and cached[:2] == (info.st_ino, info.st_size):
                    self._cache.move_to_end(key)
                    return cached[2]
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            # MAP_POPULATE: one call fills the page tables instead of a fault per page on first touch.
            mapped = mmap.mmap(fd, info.st_size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0), prot=prot)
            with self._lock:
                self._cache[key] = (info.st_ino, info.st_size, mapped)
                while len(self._cache) > self._cached_mappings:
                    self._cache.popitem(last=False)  # unmapped once no tensor uses it any more
            return mapped
        finally:
            os.close(fd)

    def read(self, region: pb.SharedRegion, where: str, nbytes: int) -> memoryview:
        """The region's bytes, read-only (the mapping lives as long as the view and what wraps it)."""
        mapped = self._open(region, where, nbytes, writable=False)
        return memoryview(mapped)[region.offset: region.offset + nbytes]

    def write(self, region: pb.SharedRegion, where: str, tensor: torch.Tensor) -> None:
        """Copy a CPU tensor's bytes into the region."""
        flat = tensor.detach().contiguous().reshape(-1)
        nbytes = flat.numel() * flat.element_size()
        mapped = self._open(region, where, nbytes, writable=True)
        if nbytes:
            target = torch.frombuffer(mapped, dtype=torch.uint8, count=nbytes, offset=region.offset)
            target.copy_(flat.view(torch.uint8))
