"""Acquisition strategies (pure: arrays in, ranked absolute indices out)."""

from alcv.models.detections import PredictionRequest
from alcv.strategies.base import BoxFilter, PoolStats, Strategy, select_by_score
from alcv.strategies.class_balance import ClassBalanceStrategy
from alcv.strategies.crb import CRBStrategy, kmeans_plus_plus, label_entropy
from alcv.strategies.diversity import CoresetStrategy, k_centre_greedy, nearest_distances
from alcv.strategies.hybrid import HybridStrategy
from alcv.strategies.localization import LocalizationStabilityStrategy, box_stability
from alcv.strategies.oracle import ErrorOracleStrategy
from alcv.strategies.random_sampling import RandomStrategy
from alcv.strategies.selection import (
    BUDGET_UNITS,
    Picker,
    SelectionRules,
    ranked_positions,
    tie_break_keys,
    top_k,
)
from alcv.strategies.uncertainty import (
    AGGREGATIONS,
    EMPTY_FRAME_POLICIES,
    UNCERTAINTIES,
    UncertaintyStrategy,
    aggregate,
    binary_entropy,
    class_distribution,
    entropy,
    least_confidence,
    margin,
    mutual_information,
    vote_entropy,
)

__all__ = ["AGGREGATIONS", "BUDGET_UNITS", "EMPTY_FRAME_POLICIES", "UNCERTAINTIES", "BoxFilter", "CRBStrategy",
           "ClassBalanceStrategy", "CoresetStrategy", "ErrorOracleStrategy", "HybridStrategy",
           "LocalizationStabilityStrategy", "Picker", "PoolStats", "PredictionRequest", "RandomStrategy",
           "SelectionRules", "Strategy", "UncertaintyStrategy", "aggregate", "binary_entropy", "box_stability",
           "class_distribution",
           "entropy", "k_centre_greedy", "kmeans_plus_plus", "label_entropy", "least_confidence", "margin",
           "mutual_information", "nearest_distances", "ranked_positions", "select_by_score", "tie_break_keys", "top_k",
           "vote_entropy"]
