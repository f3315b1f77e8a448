"""Ranking, budgets and the spreading of picks over drives; pure functions and small state, no I/O.

A loop's acquisition takes candidates one at a time (in a strategy's rank order, or one by one for
greedy strategies such as k-centre) and a :class:`Picker` accepts or skips each under the loop's
:class:`SelectionRules`: a budget counted in frames or in boxes, and optionally at most ``max_per_drive``
picks per drive and no two picks of one drive within ``min_gap_seconds``.

Spreading is a preference, not a limit on the budget: when the candidates run out under the spreading rules
while budget is left, the picker relaxes them (twice the picks per drive, half the gap, at most
:data:`SPREAD_RELAXATIONS` times, then no spreading at all) and the strategy offers the candidates again, so
the budget is spent. ``SelectionRules(strict_spread=True)`` keeps them as hard limits instead.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

BUDGET_UNITS = ("frames", "boxes")

#: how often a :class:`Picker` relaxes the spreading rules (each time doubling ``max_per_drive`` and halving
#: ``min_gap_seconds``) before it drops them, when they leave budget unspent
SPREAD_RELAXATIONS = 3


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a bijective, well-mixing hash of ``uint64`` values."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def tie_break_keys(indices: np.ndarray, seed: int) -> np.ndarray:
    """Seeded pseudo-random ``uint64`` key per absolute index: ``splitmix64(index ^ splitmix64(seed))``.

    The key of an index depends only on ``(index, seed)``, never on its position in the array, so
    rankings that use it are invariant to the order in which candidates are given; hashing the seed
    first makes seeds that differ in a few bits give unrelated orders.
    """
    seed_hash = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    return _splitmix64(np.asarray(indices, dtype=np.uint64) ^ seed_hash)


def _check_scores(candidates: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    candidates = np.asarray(candidates, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if candidates.shape != scores.shape or candidates.ndim != 1:
        raise ValueError(f"ranking: 'candidates' and 'scores' must be 1-D of equal length, got "
                         f"{candidates.shape} and {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("ranking: 'scores' contains NaN; every candidate needs a score")
    return candidates, scores


def _first_ranked(keys: np.ndarray, scores: np.ndarray, count: int) -> np.ndarray:
    """Positions of the ``count`` best by (score descending, key ascending), in that order, in
    O(N + count log count) unless many scores tie at the cut."""
    if count >= scores.size:
        return np.lexsort((keys, -scores))
    if scores[0] == scores.min() == scores.max():  # no score to rank by (random): the keys alone decide
        first = np.argpartition(keys, count - 1)[:count]
        return first[np.argsort(keys[first])]
    cut = -np.partition(-scores, count - 1)[count - 1]
    inside = np.flatnonzero(scores >= cut)
    return inside[np.lexsort((keys[inside], -scores[inside]))][:count]


def ranked_positions(candidates: np.ndarray, scores: np.ndarray, seed: int,
                     first_chunk: int = 1024) -> Iterator[np.ndarray]:
    """The positions of ``candidates`` in rank order (highest score first, ties broken by
    :func:`tie_break_keys`), in chunks of growing size, so that a caller who needs only the top few of a
    huge pool never pays for a full sort. The order depends only on the (index, score) pairs and the seed,
    not on the order of the arrays."""
    candidates, scores = _check_scores(candidates, scores)
    keys = tie_break_keys(candidates, seed)
    done, count = 0, max(first_chunk, 1)
    while done < candidates.size:
        order = _first_ranked(keys, scores, min(count, candidates.size))
        yield order[done:]
        done, count = order.size, count * 8


def top_k(candidates: np.ndarray, scores: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The ``k`` candidates with the highest scores, best first.

    Args:
        candidates: ``(N,)`` distinct absolute indices.
        scores: ``(N,)`` float, higher = more worth labeling; ``+inf``/``-inf`` allowed, NaN not.
        k: how many to return; more than ``N`` returns all of them.
        seed: breaks ties in score with :func:`tie_break_keys`, so equal scores are ordered randomly
            but reproducibly.

    Returns:
        ``(min(k, N),)`` int64 absolute indices.
    """
    if k < 0:
        raise ValueError(f"top_k: 'k' must be >= 0, got {k}")
    candidates, scores = _check_scores(candidates, scores)
    if k == 0 or candidates.size == 0:
        return candidates[:0]
    return candidates[_first_ranked(tie_break_keys(candidates, seed), scores, min(k, candidates.size))]


@dataclass(frozen=True)
class SelectionRules:
    """How much one acquisition labels and how its picks are spread.

    Attributes:
        budget: per acquisition, in ``unit``: frames, or box-equivalents for ``boxes``.
        unit: ``frames`` (every frame costs 1) or ``boxes`` (a frame costs ``frame_cost + box_cost x`` its
            predicted box count, since per-frame budgets favour crowded frames and hide the real labeling
            cost); the picks fill the budget without exceeding it.
        frame_cost, box_cost: the cost model for ``boxes`` (looking at a frame costs ``frame_cost`` box
            equivalents; ``frame_cost`` must be > 0, else frames with no predicted box would be free).
        box_min_score: predicted boxes scored at least this count towards a frame's cost.
        max_per_drive: at most this many picks per drive in one acquisition (None: no limit).
        min_gap_seconds: no two picks of one drive closer in time than this (None: no limit).
        strict_spread: keep the spreading rules even when they leave budget unspent (default: relax them,
            see the module's docstring).
    """

    budget: float
    unit: str = "frames"
    frame_cost: float = 1.0
    box_cost: float = 1.0
    box_min_score: float = 0.3
    max_per_drive: int | None = None
    min_gap_seconds: float | None = None
    strict_spread: bool = False

    def __post_init__(self) -> None:
        if self.unit not in BUDGET_UNITS:
            raise ValueError(f"loop.budget_unit: unknown '{self.unit}', expected one of {BUDGET_UNITS}")
        if not (math.isfinite(self.budget) and self.budget >= 0):
            raise ValueError(f"loop.query_size: the budget must be a finite number >= 0, got {self.budget}")
        if self.unit == "boxes" and not (0 < self.frame_cost < math.inf and 0 <= self.box_cost < math.inf):
            raise ValueError(f"loop.cost: frame cost must be > 0 and box cost >= 0 with budget_unit=boxes, got "
                             f"frame={self.frame_cost}, box={self.box_cost}")
        if not 0.0 <= self.box_min_score <= 1.0:
            raise ValueError(f"loop.cost.box_min_score must be in [0, 1], got {self.box_min_score}")
        if self.max_per_drive is not None and self.max_per_drive < 1:
            raise ValueError(f"loop.spread.max_per_drive must be >= 1 or null, got {self.max_per_drive}")
        if self.min_gap_seconds is not None and not 0 <= self.min_gap_seconds < math.inf:
            raise ValueError(f"loop.spread.min_gap_seconds must be a finite number >= 0 or null, got "
                             f"{self.min_gap_seconds}")
        if not isinstance(self.strict_spread, bool):
            raise ValueError(f"loop.spread.strict must be true or false, got {self.strict_spread!r}")

    @property
    def counts_boxes(self) -> bool:
        return self.unit == "boxes"

    @property
    def spreads(self) -> bool:
        return self.max_per_drive is not None or self.min_gap_seconds is not None

    def costs(self, predicted_boxes: np.ndarray) -> np.ndarray:
        """Cost of each frame ``(N,)`` from its predicted box count ``(N,)``: 1 per frame for ``frames``."""
        if not self.counts_boxes:
            return np.ones(len(predicted_boxes))
        return self.frame_cost + self.box_cost * np.asarray(predicted_boxes, dtype=np.float64)


class Picker:
    """Accepts candidates (by position) one at a time while the budget and the spreading rules allow.

    A strategy offers its candidates through :meth:`offer` or :meth:`take_in_order`; one that offers them
    itself (a greedy one) must, when its candidates run out before the picker is :attr:`full`, call
    :meth:`relax` and, if that returns True, offer the candidates it was refused again.

    Args:
        rules: the loop's :class:`SelectionRules`.
        costs: ``(N,)`` cost of each candidate (ones for a frame budget).
        drive_id, timestamp: ``(N,)`` each candidate's drive and time in seconds; needed only when the
            rules spread picks.
    """

    def __init__(self, rules: SelectionRules, costs: np.ndarray, drive_id: np.ndarray | None = None,
                 timestamp: np.ndarray | None = None) -> None:
        if rules.spreads and (drive_id is None or timestamp is None):
            raise ValueError("Picker: spreading picks over drives needs each candidate's drive id and timestamp")
        self.rules = rules
        self.costs = np.asarray(costs, dtype=np.float64)
        self.drive_id = drive_id
        self.timestamp = timestamp
        self.remaining = float(rules.budget)
        self.cheapest = float(self.costs.min()) if self.costs.size else np.inf
        self.positions: list[int] = []
        #: how often the spreading rules were relaxed; above :data:`SPREAD_RELAXATIONS` they are dropped
        self.relaxations = 0
        self._taken: set[int] = set()
        self._drive_times: dict[int, list[float]] = {}

    @property
    def full(self) -> bool:
        """No candidate can fit any more (or every candidate was taken)."""
        return self.remaining < self.cheapest or len(self.positions) == self.costs.size

    @property
    def spent(self) -> float:
        return float(self.rules.budget - self.remaining)

    @property
    def spreading(self) -> bool:
        """Whether spreading rules still apply (they are set and not yet dropped by :meth:`relax`)."""
        return self.rules.spreads and self.relaxations <= SPREAD_RELAXATIONS

    def relax(self) -> bool:
        """Relax the spreading rules one step (see the module's docstring), unless they are strict, absent or
        already dropped, or the picker is :attr:`full`; returns whether they were relaxed."""
        if self.full or not self.spreading or self.rules.strict_spread:
            return False
        self.relaxations += 1
        return True

    def admissible(self, position: int) -> bool:
        """Whether candidate ``position`` could be taken now (fits the budget, keeps the spreading)."""
        if position in self._taken or self.costs[position] > self.remaining + 1e-9:
            return False
        if not self.spreading:
            return True
        times = self._drive_times.get(int(self.drive_id[position]), [])  # type: ignore[index]
        scale = 2 ** self.relaxations
        if self.rules.max_per_drive is not None and len(times) >= self.rules.max_per_drive * scale:
            return False
        if self.rules.min_gap_seconds is not None and times:
            time = float(self.timestamp[position])  # type: ignore[index]
            slot = bisect.bisect_left(times, time)
            nearest = min(abs(times[i] - time) for i in (slot - 1, slot) if 0 <= i < len(times))
            if nearest < self.rules.min_gap_seconds / scale:
                return False
        return True

    def offer(self, position: int) -> bool:
        """Take candidate ``position`` if :meth:`admissible`; returns whether it was taken."""
        if not self.admissible(position):
            return False
        self.positions.append(int(position))
        self._taken.add(int(position))
        self.remaining -= float(self.costs[position])
        if self.rules.spreads:
            bisect.insort(self._drive_times.setdefault(int(self.drive_id[position]), []),  # type: ignore[index]
                          float(self.timestamp[position]))  # type: ignore[index]
        return True

    def take_in_order(self, order: Callable[[], Iterator[np.ndarray]]) -> list[int]:
        """Offer positions chunk by chunk in rank order until full, going through the order again after each
        :meth:`relax` while budget is left; returns the taken positions.

        Args:
            order: makes a fresh iterator of position chunks in rank order (e.g. :func:`ranked_positions`).
        """
        while True:
            for chunk in order():
                if not self.spreading and not self.rules.counts_boxes:  # a frame budget: the first ones fit
                    fresh = chunk[~np.isin(chunk, list(self._taken))] if self._taken else chunk
                    for position in fresh[:int(self.remaining + 1e-9)]:
                        self.offer(int(position))
                else:
                    for position in chunk:
                        self.offer(int(position))
                        if self.full:
                            break
                if self.full:
                    break
            if not self.relax():
                return self.positions
