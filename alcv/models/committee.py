"""A committee of independently trained detectors whose predictions are matched box by box."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from alcv.models.detections import Detections, PredictionRequest


def centres_and_scales(boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Box centres ``(M, 2)`` and sizes ``(M,)`` (the larger side) in the boxes' own units.

    3D boxes ``(M, 7)`` ``[x, y, z, dx, dy, dz, yaw]`` use the bird's-eye-view centre and footprint (metres);
    2D boxes ``(M, 4)`` ``xyxy`` their centre and larger side (pixels).
    """
    if boxes.shape[-1] == 7:
        return boxes[:, :2], boxes[:, 3:5].max(dim=1).values
    if boxes.shape[-1] == 4:
        return (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]).max(dim=1).values
    raise ValueError(f"centres_and_scales: expected (M, 7) 3D or (M, 4) 2D boxes, got {tuple(boxes.shape)}")


def match_to_anchor(anchor: Detections, other: Detections, radius: float = 0.5) -> Tensor:
    """For each box of ``anchor``, the index of the box of ``other`` it matches, or -1.

    Greedy, one-to-one: anchor boxes in descending score each take the nearest unmatched box of ``other``
    whose centre lies within ``radius`` x the anchor box's larger side (so the rule is the same in metres
    and in pixels). Returns ``(M,)`` int64.
    """
    matched = torch.full((len(anchor),), -1, dtype=torch.long, device=anchor.boxes.device)
    if len(anchor) == 0 or len(other) == 0:
        return matched
    anchor_centres, anchor_scales = centres_and_scales(anchor.boxes.float())
    other_centres, _ = centres_and_scales(other.boxes.float())
    distances = torch.cdist(anchor_centres, other_centres)
    distances[distances > radius * anchor_scales[:, None]] = torch.inf
    for row in torch.argsort(anchor.scores, descending=True).tolist():
        column = int(torch.argmin(distances[row]))
        if torch.isfinite(distances[row, column]):
            matched[row] = column
            distances[:, column] = torch.inf
    return matched


class CommitteeModule(pl.LightningModule):
    """Pool inference over a committee: every member predicts the batch; the first member's boxes are the
    committee's, and each box gets ``prob_samples`` ``(T, M, C)`` (member t's class probabilities of its
    matched box, zeros where it has none) and ``found`` ``(T, M)``, for vote entropy and disagreement.

    Args:
        members: trained detection modules whose ``predict_step`` returns :class:`Detections`.
        match_radius: see :func:`match_to_anchor`.
    """

    def __init__(self, members: Sequence[pl.LightningModule], match_radius: float = 0.5) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"CommitteeModule: a committee needs at least 2 members, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.match_radius = match_radius
        self.prediction_request = PredictionRequest()

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> list[Detections]:
        votes = []
        for number, member in enumerate(self.members):
            wants_embeddings = self.prediction_request.embeddings and number == 0
            member.prediction_request = dataclasses.replace(self.prediction_request, passes=1, members=1,
                                                            embeddings=wants_embeddings)
            votes.append(member.predict_step(batch, batch_idx, dataloader_idx))
        committee = []
        for frames in zip(*votes, strict=True):
            anchor = frames[0]
            device = anchor.class_probs.device
            samples = torch.zeros(len(frames), len(anchor), anchor.class_probs.shape[1], device=device)
            found = torch.zeros(len(frames), len(anchor), dtype=torch.bool, device=device)
            for number, frame in enumerate(frames):
                match = match_to_anchor(anchor, frame, self.match_radius)
                hit = match >= 0
                samples[number, hit] = frame.class_probs[match[hit]].float()
                found[number] = hit
            committee.append(dataclasses.replace(anchor, prob_samples=samples, found=found))
        return committee
