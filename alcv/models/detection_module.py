"""What every alcv detection LightningModule shares: metrics per split, kept results, optimisation."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from torch import nn

from alcv.metrics.average_precision import DetectionAP
from alcv.models.detections import PredictionRequest

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class DetectionModule(pl.LightningModule):
    """The shared part of a detection module; subclasses add the detector, ``training_step``,
    ``predict_step`` and ``_evaluate(batch, metrics)`` (which detects once and updates each of ``metrics`` with
    the batch).

    Args:
        class_names: names of the class ids, in order.
        optimizer: a partial that takes the trainable parameters, e.g. ``AdamW(lr=...)`` with
            ``_partial_: true``.
        scheduler: optional partial that takes the optimizer and ``total_steps`` (the number of optimizer
            steps of this fit, from the Trainer); stepped every optimizer step.
        val_metric, test_metric: metrics whose ``compute()`` returns a :class:`DetectionAP`.
        extra_test_metrics: further test metrics by name (same ``update`` as ``test_metric``), whose
            ``compute()`` returns a result with ``as_dict()`` (e.g. KITTI-style AP beside the centre-distance AP).

    ``validation_step``/``test_step`` accumulate the metrics; at each epoch's end the result is logged
    under ``val/`` or ``test/`` and kept in :attr:`val_result` / :attr:`test_result`; the extra test metrics'
    under ``test/<name>/`` and in :attr:`extra_test_results`.
    :attr:`prediction_request` is set by the loop before pool inference and read by ``predict_step``.
    :attr:`modality` is the kind of frame a subclass reads, as the datasets name it (``"lidar"``, ``"camera"``).
    """

    modality: ClassVar[str]

    def __init__(self, class_names: Sequence[str], optimizer: OptimizerFactory, scheduler: SchedulerFactory | None,
                 val_metric: Any, test_metric: Any, extra_test_metrics: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.class_names = tuple(class_names)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.val_metric = val_metric
        self.test_metric = test_metric
        self.extra_test_metrics = nn.ModuleDict(dict(extra_test_metrics or {}))
        self.extra_test_results: dict[str, Any] = {}
        self.val_result: DetectionAP | None = None
        self.test_result: DetectionAP | None = None
        self.prediction_request = PredictionRequest()

    def _evaluate(self, batch: dict[str, Any], metrics: Sequence[Any]) -> None:
        raise NotImplementedError

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, [self.val_metric])

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, [self.test_metric, *self.extra_test_metrics.values()])

    def _logged_values(self, result: DetectionAP) -> dict[str, float]:
        """What is logged of a result: mAP and AP per class (subclasses may add to it)."""
        return result.as_dict()

    def _log_result(self, prefix: str, metric: Any, values: Callable[[Any], dict[str, float]]) -> Any:
        result = metric.compute()
        metric.reset()
        self.log_dict({f"{prefix}/{key}": value for key, value in values(result).items() if math.isfinite(value)},
                      sync_dist=False)
        return result

    def on_validation_epoch_end(self) -> None:
        self.val_result = self._log_result("val", self.val_metric, self._logged_values)

    def on_test_epoch_end(self) -> None:
        self.test_result = self._log_result("test", self.test_metric, self._logged_values)
        self.extra_test_results = {name: self._log_result(f"test/{name}", metric, lambda result: result.as_dict())
                                   for name, metric in self.extra_test_metrics.items()}

    def check_optimization(self, total_steps: int = 100) -> None:
        """Build the optimiser and the scheduler once and throw them away (building them changes no parameter),
        so that settings they refuse (e.g. a negative learning rate) fail before a run writes anything.

        Raises:
            ValueError: naming ``model.optimizer`` or ``model.scheduler`` and what refused it.
        """
        try:
            optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        except (TypeError, ValueError) as error:
            raise ValueError(f"model.optimizer: {_settings(self.optimizer_factory)} refused: {error}") from error
        if self.scheduler_factory is not None:
            try:
                self.scheduler_factory(optimizer, total_steps=total_steps)
            except (TypeError, ValueError) as error:
                raise ValueError(f"model.scheduler: {_settings(self.scheduler_factory)} refused: {error}") from error

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _settings(factory: Any) -> str:
    """A factory (a ``functools.partial`` from a ``_partial_`` config) as ``Name(key=value, ...)``."""
    name = getattr(getattr(factory, "func", factory), "__name__", repr(factory))
    keywords = getattr(factory, "keywords", {}) or {}
    return f"{name}(" + ", ".join(f"{key}={value!r}" for key, value in keywords.items()) + ")"
