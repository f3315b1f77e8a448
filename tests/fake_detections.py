"""Hand-built :class:`Detections` for the tests of strategies, the callback and acquisition."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from alcv.models.detections import Detections


def make_frame(index: int, probs: Sequence[Sequence[float]], *, num_classes: int = 3,
               scores: Sequence[float] | None = None, samples: np.ndarray | None = None,
               found: np.ndarray | None = None, embedding: Sequence[float] | None = None) -> Detections:
    """One frame's detections from per-box class probabilities ``(M, C)`` (``num_classes`` gives C when
    there is no box); labels are the argmax, scores
    default to the top probability; ``samples`` ``(T, M, C)`` and ``found`` ``(T, M)`` as a model that
    predicts several passes or a committee would fill them."""
    array = np.asarray(probs, dtype=np.float32)
    class_probs = torch.tensor(array.reshape(0, num_classes) if array.size == 0 else array)
    box_scores = class_probs.max(dim=1).values if scores is None else torch.tensor(scores, dtype=torch.float32)
    if len(class_probs) == 0:
        box_scores = torch.zeros(0)
    prob_samples = None if samples is None else torch.tensor(np.asarray(samples, dtype=np.float32))
    if samples is not None and found is None:
        found = np.ones(np.asarray(samples).shape[:2], dtype=bool)
    return Detections(index, torch.zeros(len(class_probs), 7), class_probs.argmax(dim=1), box_scores, class_probs,
                      embedding=None if embedding is None else torch.tensor(embedding, dtype=torch.float32),
                      prob_samples=prob_samples, found=None if found is None else torch.tensor(found))
