"""Seeds derived from a run's seed, so that every random choice of a run is reproducible on its own."""

from __future__ import annotations

import numpy as np

#: stream ids of :func:`derive_seed`, one per kind of random choice in a run
INITIAL_SET, SELECTION, TRAINING = 0, 1, 2


def derive_seed(seed: int, stream: int, loop: int = 0) -> int:
    """A 31-bit seed for ``stream`` at ``loop`` of a run seeded with ``seed`` (usable by any RNG)."""
    return int(np.random.SeedSequence([seed, stream, loop]).generate_state(1)[0] & 0x7FFFFFFF)
