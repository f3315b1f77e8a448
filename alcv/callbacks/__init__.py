"""Lightning callbacks of alcv."""

from alcv.callbacks.active_learning import ActiveLearningCallback, Selection, acquire, choose_frames

__all__ = ["ActiveLearningCallback", "Selection", "acquire", "choose_frames"]
