"""What a detector's ``predict_step`` returns for each frame, and what pool inference may ask of it."""

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
        embedding: ``(D,)`` the frame's embedding (pooled backbone features), when requested.
        prob_samples: ``(T, M, C)`` the class probabilities of the same ``M`` boxes under ``T`` stochastic
            passes (MC dropout) or from ``T`` committee members, when requested. The model matches boxes
            across samples: row ``m`` of every sample is box ``m``.
        found: ``(T, M)`` bool, whether sample ``t`` detected box ``m`` at all (a committee member may
            miss a box; its ``prob_samples`` row is then zeros). All true for MC-dropout passes.
        mirror_boxes: ``(M, 7 | 4)`` the box that a pass over the mirrored frame gave for each box, mirrored back
            into this frame's coordinates (:mod:`alcv.models.mirror`), when requested; zeros where it gave none.
        mirror_found: ``(M,)`` bool, whether the mirrored pass gave box ``m`` a match.
    """

    index: int
    boxes: Tensor
    labels: Tensor
    scores: Tensor
    class_probs: Tensor
    embedding: Tensor | None = None
    prob_samples: Tensor | None = None
    found: Tensor | None = None
    mirror_boxes: Tensor | None = None
    mirror_found: Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.numel())

    def cpu(self) -> Detections:
        def move(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else tensor.detach().cpu()

        return Detections(self.index, self.boxes.detach().cpu(), self.labels.detach().cpu(),
                          self.scores.detach().cpu(), self.class_probs.detach().cpu(), move(self.embedding),
                          move(self.prob_samples), move(self.found), move(self.mirror_boxes), move(self.mirror_found))


@dataclass(frozen=True)
class PredictionRequest:
    """What pool inference must produce for a strategy.

    Attributes:
        passes: stochastic forward passes per frame with dropout active (MC dropout); 1 = deterministic.
        dropout: the dropout probability of those passes.
        members: independently trained models whose predictions are matched per box (a committee).
        embeddings: whether each frame's embedding (pooled backbone features) is needed.
        include_labeled: whether the labeled frames are predicted too (diversity needs their embeddings).
        mirror: whether each frame is predicted again mirrored, its boxes matched to the first pass's
            (:class:`~alcv.models.mirror.MirroredPassModule`).
    """

    passes: int = 1
    dropout: float = 0.0
    members: int = 1
    embeddings: bool = False
    include_labeled: bool = False
    mirror: bool = False
