"""A byte-budgeted store of decoded images in shared memory, for one process and its workers.

One budget per process (``settings.image_cache_mb``) is shared by every live dataset: a
dataset reserves slots for as many of its images as the budget still holds when it is
built, and gives them back when it is collected. The slots live in shared memory that the
DataLoader's worker processes inherit: a worker that decodes image ``i`` stores it, and
every process (the main one and each worker) reads it from there. There is no copy per
worker, and memory never grows past the budget whatever the dataset's size.

Design: all images of a dataset are resized to one (H, W), so the store is one uint8 slab
[slots, 3, H, W] holding the first ``slots`` images of the list (image ``i`` in slot ``i``);
the others are decoded every time. With random access that is as many hits as any policy
of that size gets, and it needs neither locks nor eviction: two processes storing the same
image write the same bytes. Hits and misses are counted per process (one counter row per
DataLoader worker), so the counts are exact without locks.
"""

from __future__ import annotations

import gc
import threading
import weakref

import torch
from torch import Tensor

MAX_COUNTER_ROWS = 65
"""Counter rows: the main process and up to 64 DataLoader workers (more share rows)."""


class CacheBudget:
    """The bytes of image caches a process may hold (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reserved = 0

    @staticmethod
    def limit() -> int:
        """The budget in bytes, from ``settings.image_cache_mb`` (read each time)."""
        from ucvgl.shared.config import get_settings

        return int(get_settings().image_cache_mb * 2**20)

    def reserve(self, wanted: int, unit: int = 1) -> int:
        """Reserve up to ``wanted`` bytes in whole ``unit``s; returns the bytes granted."""
        for attempt in range(2):
            with self._lock:
                granted = max(0, min(wanted, self.limit() - self.reserved))
                granted -= granted % unit
                if granted == wanted or attempt == 1:
                    self.reserved += granted
                    return granted
            gc.collect()  # caches of datasets nobody holds any more give their bytes back
        return 0

    def release(self, nbytes: int) -> None:
        """Give back bytes of a collected cache."""
        with self._lock:
            self.reserved = max(0, self.reserved - nbytes)


PROCESS_BUDGET = CacheBudget()
"""The one budget of this process (a forked DataLoader worker never reserves)."""


def _shared_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A zero-filled tensor in shared memory; untouched pages use no RAM."""
    numel = 1
    for n in shape:
        numel *= n
    itemsize = torch.empty(0, dtype=dtype).element_size()
    storage = torch.UntypedStorage._new_shared(max(1, numel * itemsize))
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


def _counter_row() -> int:
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    return 0 if info is None else 1 + info.id % (MAX_COUNTER_ROWS - 1)


class ImageCache:
    """Decoded uint8 [3, H, W] images ``0 .. slots - 1`` of one dataset, in shared memory.

    Args:
        num_images: images in the dataset.
        size: (H, W) of every image.
        budget: the process budget to reserve from (default :data:`PROCESS_BUDGET`).
        max_bytes: reserve at most this much (default: everything the dataset needs).
    """

    def __init__(
        self,
        num_images: int,
        size: tuple[int, int],
        *,
        budget: CacheBudget | None = None,
        max_bytes: int | None = None,
    ) -> None:
        h, w = int(size[0]), int(size[1])
        self.image_bytes = 3 * h * w
        wanted = num_images * self.image_bytes
        if max_bytes is not None:
            wanted = min(wanted, int(max_bytes))
        budget = PROCESS_BUDGET if budget is None else budget
        granted = budget.reserve(wanted, self.image_bytes)
        self.slots = granted // self.image_bytes
        self.nbytes = self.slots * self.image_bytes
        self._slab = _shared_tensor((max(1, self.slots), 3, h, w), torch.uint8)
        self._filled = _shared_tensor((max(1, self.slots),), torch.uint8)
        self._counts = _shared_tensor((MAX_COUNTER_ROWS, 2), torch.int64)
        self._finalizer = weakref.finalize(self, budget.release, granted)

    def get(self, index: int) -> Tensor | None:
        """A copy of image ``index`` when stored (a hit), else None (a miss)."""
        row = _counter_row()
        if index < self.slots and self._filled[index]:
            self._counts[row, 0] += 1
            return self._slab[index].clone()
        self._counts[row, 1] += 1
        return None

    def put(self, index: int, image: Tensor) -> None:
        """Store image ``index`` (uint8 [3, H, W]) when it has a slot."""
        if index < self.slots:
            self._slab[index].copy_(image)
            self._filled[index] = 1  # after the pixels: a reader never sees a half image

    @property
    def hits(self) -> int:
        """Hits counted by this process and its workers so far."""
        return int(self._counts[:, 0].sum())

    @property
    def misses(self) -> int:
        """Misses counted by this process and its workers so far."""
        return int(self._counts[:, 1].sum())

    @property
    def stored(self) -> int:
        """Images held now."""
        return int(self._filled[: self.slots].sum()) if self.slots else 0

    @property
    def stored_bytes(self) -> int:
        """Bytes of the images held now (at most ``nbytes``, the reservation)."""
        return self.stored * self.image_bytes
