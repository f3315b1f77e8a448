"""The top-picked frames of an acquisition as people look at them: a gallery figure and W&B media.

After each acquisition the loop predicts its first ``loop.gallery_frames`` picks again with the model that
picked them and draws each frame twice, side by side: the ground truth, and the predicted boxes coloured by
their uncertainty (least confidence, ``1 - max class probability``: yellow = sure, purple = unsure). LiDAR
frames are drawn from above (the points in the x-y plane of the LiDAR frame, boxes as rotated rectangles),
camera frames as the image with ``xyxy`` pixel boxes. The figure goes to ``<output_dir>/gallery/loop_NNN.png``
(``NNN``: the loop the picks are labeled for); under W&B the same frames become the table ``al/gallery``,
one row per pick with its media: a :class:`wandb.Object3D` point cloud with ground-truth and predicted boxes
for LiDAR, a :class:`wandb.Image` with both box sets for camera frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.patches import Polygon, Rectangle

from alcv.metrics.rotated_iou import box_corners_bev
from alcv.models.detections import Detections, PredictionRequest

GALLERY_DIR = "gallery"
#: the colour map of the predicted boxes' uncertainty, from 0 (sure) to 1 (unsure)
UNCERTAINTY_COLOURS = colormaps["plasma_r"]
GROUND_TRUTH_COLOUR = "#1a9850"


def box_uncertainty(detections: Detections) -> np.ndarray:
    """``(M,)`` least-confidence uncertainty of each predicted box, ``1 - max_c class_probs[m, c]``."""
    probs = detections.class_probs.detach().cpu().numpy()
    return 1.0 - probs.max(axis=1) if probs.size else np.zeros(len(probs))


@torch.no_grad()
def predict_frames(model: pl.LightningModule, collate: Any, items: Sequence[dict[str, Any]]) -> list[Detections]:
    """``model``'s plain detections (no embeddings or sampled passes) of the dataset ``items``, in that order, in
    eval mode on its device; the model's training mode and prediction request are restored afterwards."""
    if not items:
        return []
    batch = pl.utilities.move_data_to_device(collate(list(items)), model.device)
    was_training, request = model.training, getattr(model, "prediction_request", None)
    model.eval()
    if request is not None:
        model.prediction_request = PredictionRequest()
    try:
        return list(model.predict_step(batch, 0))
    finally:
        model.train(was_training)
        if request is not None:
            model.prediction_request = request


def _truth_boxes(item: dict[str, Any]) -> np.ndarray:
    """An item's ground-truth boxes as a plain array (``(M, 7)`` LiDAR or ``(M, 4)`` pixel boxes)."""
    return np.asarray(torch.as_tensor(item["boxes"]).as_subclass(torch.Tensor))


def _image(item: dict[str, Any]) -> np.ndarray:
    """A camera item's image as ``(H, W, 3)``, in its own dtype."""
    return torch.as_tensor(item["image"]).as_subclass(torch.Tensor).permute(1, 2, 0).numpy()


def _draw_lidar(ax: Axes, item: dict[str, Any], boxes: np.ndarray, colours: Sequence[Any], title: str) -> None:
    points = item["points"].numpy()
    ax.scatter(points[:, 0], points[:, 1], s=0.3, c="#4d4d4d", linewidths=0)
    for corners, colour in zip(box_corners_bev(boxes.reshape(-1, 7)), colours, strict=True):
        ax.add_patch(Polygon(corners, closed=True, fill=False, edgecolor=colour, linewidth=1.2))
    ax.set_aspect("equal")
    ax.set(title=title, xlabel="x (m)", ylabel="y (m)")


def _draw_camera(ax: Axes, item: dict[str, Any], boxes: np.ndarray, colours: Sequence[Any], title: str) -> None:
    ax.imshow(_image(item))
    for (x0, y0, x1, y1), colour in zip(boxes.reshape(-1, 4), colours, strict=True):
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.2))
    ax.set_axis_off()
    ax.set_title(title)


def gallery_figure(items: Sequence[dict[str, Any]], detections: Sequence[Detections], scores: Sequence[float],
                   modality: str, loop: int) -> Figure:
    """One row per picked frame (``items`` from the dataset, their ``detections`` and acquisition ``scores``, in
    pick order): the ground truth on the left, the predictions coloured by uncertainty on the right."""
    draw = _draw_lidar if modality == "lidar" else _draw_camera
    figure = Figure(figsize=(10, 4.2 * max(len(items), 1)), layout="constrained")
    axes = np.atleast_2d(figure.subplots(max(len(items), 1), 2, squeeze=False))
    for rank, (item, frame, score) in enumerate(zip(items, detections, scores, strict=True)):
        truth = _truth_boxes(item)
        draw(axes[rank, 0], item, truth, [GROUND_TRUTH_COLOUR] * len(truth),
             f"pick {rank}: frame {int(item['index'])}, ground truth ({len(truth)} boxes)")
        uncertainty = box_uncertainty(frame)
        draw(axes[rank, 1], item, frame.boxes.detach().cpu().numpy(), [UNCERTAINTY_COLOURS(u) for u in uncertainty],
             f"predicted ({len(uncertainty)} boxes), acquisition score {score:.3g}")
    figure.colorbar(ScalarMappable(cmap=UNCERTAINTY_COLOURS), ax=axes[:, 1].tolist(),
                    label="box uncertainty (1 - max class probability)", shrink=0.6)
    figure.suptitle(f"The first picks labeled for loop {loop}, with the predictions of the model that chose them")
    return figure


def _corners_3d(boxes: np.ndarray) -> np.ndarray:
    """``(N, 8, 3)`` corners of ``(N, 7)`` LiDAR boxes: the BEV corners at the bottom, then at the top."""
    bev = box_corners_bev(boxes) if len(boxes) else np.zeros((0, 4, 2))
    bottom = boxes[:, 2:3] - boxes[:, 5:6] / 2
    top = boxes[:, 2:3] + boxes[:, 5:6] / 2
    return np.concatenate([np.dstack([bev, np.repeat(bottom[:, :, None], 4, axis=1)]),
                           np.dstack([bev, np.repeat(top[:, :, None], 4, axis=1)])], axis=1)


def wandb_media(item: dict[str, Any], detections: Detections, class_names: Sequence[str], modality: str) -> Any:
    """The W&B media of one picked frame: an ``Object3D`` point cloud with ground-truth (green) and predicted
    boxes (coloured by uncertainty, captioned with class and uncertainty) for LiDAR, an ``Image`` with the two
    box sets for camera frames."""
    import wandb

    truth = _truth_boxes(item)
    labels, predicted = item["labels"].numpy(), detections.boxes.detach().cpu().numpy()
    predicted_labels, uncertainty = detections.labels.cpu().numpy(), box_uncertainty(detections)
    if modality == "lidar":
        def box(corners: np.ndarray, label: str, colour: Sequence[float]) -> dict[str, Any]:
            return {"corners": corners.tolist(), "label": label, "color": [int(255 * c) for c in colour[:3]]}

        boxes = [box(c, f"truth {class_names[int(k)]}", (0.1, 0.6, 0.3)) for c, k in
                 zip(_corners_3d(truth.reshape(-1, 7)), labels, strict=True)]
        boxes += [box(c, f"{class_names[int(k)]} u={u:.2f}", UNCERTAINTY_COLOURS(u)) for c, k, u in
                  zip(_corners_3d(predicted.reshape(-1, 7)), predicted_labels, uncertainty, strict=True)]
        points = item["points"].numpy()[:, :3]
        return wandb.Object3D({"type": "lidar/beta", "points": points, "boxes": np.array(boxes)})
    image = _image(item)
    class_labels = dict(enumerate(class_names))

    def box_data(boxes: np.ndarray, kinds: np.ndarray, captions: Sequence[str]) -> list[dict[str, Any]]:
        return [{"position": {"minX": float(x0), "minY": float(y0), "maxX": float(x1), "maxY": float(y1)},
                 "domain": "pixel", "class_id": int(kind), "box_caption": caption}
                for (x0, y0, x1, y1), kind, caption in zip(boxes.reshape(-1, 4), kinds, captions, strict=True)]

    return wandb.Image(image, boxes={
        "ground_truth": {"box_data": box_data(truth, labels, [class_names[int(k)] for k in labels]),
                         "class_labels": class_labels},
        "predictions": {"box_data": box_data(predicted, predicted_labels,
                                             [f"{class_names[int(k)]} u={u:.2f}"
                                              for k, u in zip(predicted_labels, uncertainty, strict=True)]),
                        "class_labels": class_labels}})


def write_gallery(output_dir: Path, loop: int, figure: Figure) -> Path:
    """Save ``figure`` as ``<output_dir>/gallery/loop_NNN.png``; returns its path."""
    folder = Path(output_dir) / GALLERY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"loop_{loop:03d}.png"
    figure.savefig(path, dpi=90)
    return path
