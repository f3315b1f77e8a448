"""Lightning callbacks of alcv."""

from alcv.callbacks.active_learning import ActiveLearningCallback, Selection, acquire

__all__ = ["ActiveLearningCallback", "Selection", "acquire"]
