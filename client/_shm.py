"""Client side of the same-host shared-memory path (a server started with ``--shm-prefix``).

Arrays made by :meth:`SharedArrays.array` live in POSIX shared memory: sent as inputs they travel by
name, with no copy at all, and gradients come back the same way. Other large arrays are copied once
into a pooled region per role. A region is unlinked when its array is garbage-collected.
"""

from __future__ import annotations

import itertools
import os
import secrets
import weakref
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from lossd.v1 import loss_service_pb2 as pb


def _release(block: shared_memory.SharedMemory) -> None:
    try:
        block.close()
        block.unlink()
    except (FileNotFoundError, BufferError):  # already gone, or a view of it is still alive
        pass


class SharedArrays:
    """Regions this client created, named ``<prefix><pid>-<random>-<n>``."""

    def __init__(self, prefix: str) -> None:
        self._prefix = f"{prefix}{os.getpid()}-{secrets.token_hex(4)}-"
        self._counter = itertools.count()
        self._regions: dict[int, pb.SharedRegion] = {}  # id(array) -> its region, while the array lives
        self._staging: dict[str, tuple[shared_memory.SharedMemory, np.ndarray]] = {}

    def array(self, shape: Any, dtype: Any) -> np.ndarray:
        """A new array backed by a shared-memory region (zeros)."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        name = f"{self._prefix}{next(self._counter)}"
        block = shared_memory.SharedMemory(name=name, create=True, size=max(nbytes, 1))
        array: np.ndarray = np.ndarray(shape, dtype=dtype, buffer=block.buf)
        key = id(array)
        self._regions[key] = pb.SharedRegion(name=name, offset=0, size=nbytes)
        regions = self._regions
        weakref.finalize(array, lambda: (regions.pop(key, None), _release(block)))
        return array

    def region_of(self, value: Any) -> pb.SharedRegion | None:
        """The region holding ``value`` when it is an array made by :meth:`array` (not a view of one)."""
        return self._regions.get(id(value)) if isinstance(value, np.ndarray) else None

    def staged(self, role: str, data: np.ndarray) -> pb.SharedRegion:
        """``data`` copied into this role's reusable staging region (grown when too small)."""
        held = self._staging.get(role)
        if held is None or held[1].nbytes < data.nbytes:
            if held is not None:
                del held  # drop our view before the region goes
                self._drop_staging(role)
            name = f"{self._prefix}{next(self._counter)}"
            block = shared_memory.SharedMemory(name=name, create=True, size=max(data.nbytes, 1))
            self._staging[role] = (block, np.ndarray((block.size,), dtype=np.uint8, buffer=block.buf))
        block, view = self._staging[role]
        view[: data.nbytes] = data.reshape(-1).view(np.uint8)
        return pb.SharedRegion(name=block.name.lstrip("/"), offset=0, size=data.nbytes)

    def _drop_staging(self, role: str) -> None:
        block, view = self._staging.pop(role)
        del view
        _release(block)

    def close(self) -> None:
        """Unlink the staging regions (arrays made by :meth:`array` go when they are collected)."""
        for role in list(self._staging):
            self._drop_staging(role)
