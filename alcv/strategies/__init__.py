"""Acquisition strategies (pure: arrays in, ranked absolute indices out)."""

from alcv.strategies.selection import tie_break_keys, top_k
from alcv.strategies.strategies import RandomStrategy, Strategy, UncertaintyStrategy
from alcv.strategies.uncertainty import AGGREGATIONS, EMPTY_FRAME_POLICIES, aggregate, least_confidence

__all__ = ["AGGREGATIONS", "EMPTY_FRAME_POLICIES", "RandomStrategy", "Strategy", "UncertaintyStrategy", "aggregate",
           "least_confidence", "tie_break_keys", "top_k"]
