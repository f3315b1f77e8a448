"""Acquisition strategies (pure: arrays in, ranked absolute indices out)."""

from alcv.models.detections import PredictionRequest
from alcv.strategies.diversity import CoresetStrategy, HybridStrategy, k_centre_greedy, nearest_distances
from alcv.strategies.selection import (
    BUDGET_UNITS,
    Picker,
    SelectionRules,
    ranked_positions,
    tie_break_keys,
    top_k,
)
from alcv.strategies.strategies import (
    BoxFilter,
    ClassBalanceStrategy,
    PoolStats,
    RandomStrategy,
    Strategy,
    UncertaintyStrategy,
    select_by_score,
)
from alcv.strategies.uncertainty import (
    AGGREGATIONS,
    EMPTY_FRAME_POLICIES,
    UNCERTAINTIES,
    aggregate,
    class_distribution,
    entropy,
    least_confidence,
    margin,
    mutual_information,
    vote_entropy,
)

__all__ = ["AGGREGATIONS", "BUDGET_UNITS", "EMPTY_FRAME_POLICIES", "UNCERTAINTIES", "BoxFilter",
           "ClassBalanceStrategy", "CoresetStrategy", "HybridStrategy", "Picker", "PoolStats", "PredictionRequest",
           "RandomStrategy", "SelectionRules", "Strategy", "UncertaintyStrategy", "aggregate", "class_distribution",
           "entropy", "k_centre_greedy", "least_confidence", "margin", "mutual_information", "nearest_distances",
           "ranked_positions", "select_by_score", "tie_break_keys", "top_k", "vote_entropy"]
