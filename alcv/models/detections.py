"""What a detector's ``predict_step`` returns for each frame."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(eq=False)
class Detections:
    """The detections of one frame, before any selection logic sees them.

    A plain (not frozen) dataclass so that Lightning can move its tensors between devices.

    Attributes:
        index: absolute dataset index of the frame.
        boxes: ``(M, 7)`` ``[x, y, z, dx, dy, dz, yaw]`` in the LiDAR frame (metres, yaw around +z),
            or ``(M, 4)`` ``xyxy`` pixels for 2D detectors.
        labels: ``(M,)`` int64 predicted class ids.
        scores: ``(M,)`` confidence of each box, ``class_probs[m, labels[m]]``.
        class_probs: ``(M, C)`` per-class probabilities of each box before they were collapsed into
            one score. For sigmoid (one-vs-rest) heads each entry is an independent probability in
            [0, 1] and rows need not sum to 1; for softmax heads rows sum to 1 over the C object classes
            plus background, which is left out.
    """

    index: int
    boxes: Tensor
    labels: Tensor
    scores: Tensor
    class_probs: Tensor

    def __len__(self) -> int:
        return int(self.labels.numel())

    def cpu(self) -> Detections:
        return Detections(self.index, self.boxes.detach().cpu(), self.labels.detach().cpu(),
                          self.scores.detach().cpu(), self.class_probs.detach().cpu())
