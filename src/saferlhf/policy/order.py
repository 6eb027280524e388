"""A seeded, resumable order over a dataset: epoch e is ``permutation(n)`` drawn with seed ``seed + e``.

The item at global position i depends only on (i, n, seed), so a run that resumes at position i
sees exactly the items an uninterrupted run would have seen, without saving any generator state.
"""

from __future__ import annotations

import numpy as np


class EpochOrder:
    """``order[i]``: dataset index at global position ``i`` of endless, reshuffled epochs."""

    def __init__(self, size: int, seed: int):
        if size <= 0:
            raise ValueError("cannot order an empty dataset")
        self.size = size
        self.seed = seed
        self._cached: tuple[int, np.ndarray] = (-1, np.empty(0, dtype=np.int64))

    def __getitem__(self, position: int) -> int:
        epoch, offset = divmod(position, self.size)
        if self._cached[0] != epoch:
            self._cached = (epoch, np.random.default_rng(self.seed + epoch).permutation(self.size))
        return int(self._cached[1][offset])
