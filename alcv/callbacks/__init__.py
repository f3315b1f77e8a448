"""Lightning callbacks of alcv."""

from alcv.callbacks.active_learning import ActiveLearningCallback

__all__ = ["ActiveLearningCallback"]
