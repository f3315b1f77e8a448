"""`acquire` and `ActiveLearningCallback`: scores by absolute index in (the callback), the right frames labeled out
(the acquisition after it)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from fake_detections import make_frame
from torch.utils.data import DataLoader, Dataset, Subset

from alcv.acquisition import Selection, acquire, choose_frames
from alcv.callbacks import ActiveLearningCallback
from alcv.models.detections import Detections
from alcv.pool import LabelPool
from alcv.seeding import SELECTION, derive_seed
from alcv.strategies import Picker, PoolStats, RandomStrategy, SelectionRules, UncertaintyStrategy

DATASET_SIZE = 50
#: the pool split: 25 odd indices (the even ones are, say, the test split)
ODD = list(range(1, DATASET_SIZE, 2))


def odd_pool(labeled: Sequence[int] = (1, 3, 5, 21)) -> LabelPool:
    pool = LabelPool(ODD)
    pool.label(labeled, loop=0)
    return pool


def dense_scores(pool: LabelPool, special: dict[int, float]) -> np.ndarray:
    """Scores by absolute index: NaN outside the pool and at labeled frames, 0.1 elsewhere but ``special``."""
    scores = np.full(DATASET_SIZE, np.nan)
    scores[pool.unlabeled_indices] = 0.1
    for index, value in special.items():
        scores[index] = value
    return scores


def frame(index: int, probs: Sequence[Sequence[float]]) -> Detections:
    """Detections of one frame of the two-class pool from per-box class probabilities."""
    return make_frame(index, probs, num_classes=2)


# ------------------------------------------------------------------------------------ acquire
def test_acquire_labels_the_top_k_unlabeled_frames_at_the_loop() -> None:
    pool = odd_pool()
    # 9, 33, 47 score highest among unlabeled frames; 1 (labeled, a stale score) and 10 (not in the pool)
    # score higher still and must be ignored
    scores = dense_scores(pool, {9: 0.9, 33: 0.8, 47: 0.7, 13: 0.6})
    scores[1], scores[10] = 5.0, 9.0

    selection = acquire(pool, UncertaintyStrategy(), SelectionRules(budget=3), 1, 0, {"score": scores})

    assert isinstance(selection, Selection)
    assert selection.loop == 1
    assert selection.indices.tolist() == [9, 33, 47]
    np.testing.assert_allclose(selection.scores, [0.9, 0.8, 0.7])
    assert pool.labeled_in_loop(1).tolist() == [9, 33, 47]
    assert pool.labeled_in_loop(0).tolist() == [1, 3, 5, 21]  # earlier labels untouched
    assert pool.n_labeled == 7


def test_choose_frames_chooses_what_acquire_labels_and_leaves_the_pool_alone() -> None:
    pool, twin = odd_pool(), odd_pool()
    scores = dense_scores(pool, {9: 0.9, 33: 0.8, 47: 0.7})
    before = pool.state_dict()

    chosen = choose_frames(pool, UncertaintyStrategy(), SelectionRules(budget=3), 1, 0, {"score": scores})

    assert pool.state_dict() == before
    labeled = acquire(twin, UncertaintyStrategy(), SelectionRules(budget=3), 1, 0, {"score": scores})
    assert chosen.loop == labeled.loop == 1
    assert chosen.indices.tolist() == labeled.indices.tolist() == [9, 33, 47]
    np.testing.assert_array_equal(chosen.scores, labeled.scores)
    np.testing.assert_array_equal(chosen.costs, labeled.costs)


def test_acquire_never_relabels_even_with_ties_everywhere() -> None:
    pool = odd_pool()
    scores = dense_scores(pool, {})  # every unlabeled frame ties at 0.1
    selection = acquire(pool, UncertaintyStrategy(), SelectionRules(budget=10), 1, 4, {"score": scores})
    assert selection.indices.size == 10
    assert not set(selection.indices.tolist()) & {1, 3, 5, 21}
    assert set(pool.labeled_in_loop(1).tolist()) == set(selection.indices.tolist())


def test_acquire_refuses_an_unlabeled_frame_without_a_score() -> None:
    pool = odd_pool()
    scores = dense_scores(pool, {9: 0.9})
    scores[[25, 39]] = np.nan  # pool inference missed these two
    before = pool.state_dict()
    with pytest.raises(RuntimeError, match=re.escape("[25, 39]")):
        acquire(pool, UncertaintyStrategy(), SelectionRules(budget=3), 1, 0, {"score": scores})
    assert pool.state_dict() == before


def test_acquire_takes_the_rest_when_k_exceeds_what_is_left() -> None:
    pool = odd_pool(labeled=[i for i in ODD if i not in (7, 29, 45)])
    scores = dense_scores(pool, {29: 0.7, 45: 0.2, 7: 0.5})
    selection = acquire(pool, UncertaintyStrategy(), SelectionRules(budget=10), 3, 0, {"score": scores})
    assert selection.indices.tolist() == [29, 7, 45]
    np.testing.assert_allclose(selection.scores, [0.7, 0.5, 0.2])
    assert pool.n_unlabeled == 0
    assert pool.labeled_in_loop(3).tolist() == [7, 29, 45]


def test_acquire_without_scores_uses_the_random_strategy_seeded_per_loop() -> None:
    pool, twin = odd_pool(), odd_pool()
    candidates = pool.unlabeled_indices
    selection = acquire(pool, RandomStrategy(), SelectionRules(budget=5), 2, 8, None)

    expected = candidates[RandomStrategy().select(PoolStats(candidates), Picker(SelectionRules(budget=5),
                                                  np.ones(candidates.size)), derive_seed(8, SELECTION, 2))]
    assert selection.indices.tolist() == expected.tolist()
    assert selection.scores.tolist() == [0.0] * 5
    assert pool.labeled_in_loop(2).tolist() == sorted(expected.tolist())
    # another loop of the same run draws differently
    later = acquire(twin, RandomStrategy(), SelectionRules(budget=5), 3, 8, None)
    assert later.indices.tolist() != expected.tolist()


# ------------------------------------------------------------------------------------ callback by hand
CONFIDENT = [[0.95, 0.05]]  # LC 0.05
#: the predictions for the unlabeled odd frames: 15 (LC 0.6) then 41 (LC 0.5) are the least confident;
#: 27 sees nothing (an empty frame, ranked last with the default policy)
SPECIAL = {15: [[0.4, 0.35], [0.9, 0.1]], 41: [[0.5, 0.3]], 27: []}


def batches(pool: LabelPool, batch_size: int = 4, skip: int | None = None) -> list[list[Detections]]:
    """Detections for every unlabeled frame, in a shuffled order, cut into batches."""
    order = np.random.default_rng(0).permutation(pool.unlabeled_indices)
    frames = [frame(int(i), SPECIAL.get(int(i), CONFIDENT)) for i in order if i != skip]
    return [frames[start:start + batch_size] for start in range(0, len(frames), batch_size)]


def drive(callback: ActiveLearningCallback, prediction_batches: list[list[Detections]]) -> None:
    """What Trainer.predict does to a prediction writer, on one process."""
    trainer, module = SimpleNamespace(world_size=1), None
    callback.on_predict_start(trainer, module)  # type: ignore[arg-type]
    for batch_idx, prediction in enumerate(prediction_batches):
        callback.write_on_batch_end(trainer, module, prediction, None, None, batch_idx, 0)  # type: ignore[arg-type]
    callback.on_predict_end(trainer, module)  # type: ignore[arg-type]


def test_callback_scores_by_absolute_index_and_labels_the_least_confident() -> None:
    pool = odd_pool()
    callback = ActiveLearningCallback(UncertaintyStrategy(), SelectionRules(budget=2), dataset_size=DATASET_SIZE)
    callback.columns = {"score": np.full(DATASET_SIZE, 7.0)}  # leftovers must not survive on_predict_start

    drive(callback, batches(pool))
    selection = acquire(pool, UncertaintyStrategy(), SelectionRules(budget=2), 1, 0, callback.columns)

    scores = callback.columns["score"]
    assert scores.shape == (DATASET_SIZE,)  # one row per absolute index
    assert np.isnan(scores[0::2]).all()  # outside the pool
    assert np.isnan(scores[[1, 3, 5, 21]]).all()  # labeled: not predicted
    assert scores[15] == pytest.approx(0.6) and scores[41] == pytest.approx(0.5)
    assert np.isneginf(scores[27])
    others = [i for i in pool.unlabeled_indices.tolist() if i not in SPECIAL]
    np.testing.assert_allclose(scores[others], 0.05, rtol=1e-5)

    assert pool.labeled_in_loop(1).tolist() == [15, 41]
    assert selection.loop == 1
    assert selection.indices.tolist() == [15, 41]
    np.testing.assert_allclose(selection.scores, [0.6, 0.5], rtol=1e-6)


def test_callback_refuses_to_select_when_a_frame_was_not_predicted() -> None:
    pool = odd_pool()
    callback = ActiveLearningCallback(UncertaintyStrategy(), SelectionRules(budget=2), dataset_size=DATASET_SIZE)
    drive(callback, batches(pool, skip=33))
    with pytest.raises(RuntimeError, match=re.escape("[33]")):
        acquire(pool, UncertaintyStrategy(), SelectionRules(budget=2), 1, 0, callback.columns)
    assert pool.n_labeled == 4


# ------------------------------------------------------------------------------------ Lightning
class FrameIndices(Dataset[int]):
    """A dataset whose items are just their absolute indices."""

    def __len__(self) -> int:
        return DATASET_SIZE

    def __getitem__(self, index: int) -> int:
        return index


class LookupDetector(pl.LightningModule):
    """Predicts, for every frame, the class probabilities of a fixed table: ``(DATASET_SIZE, 2)``."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)

    def predict_step(self, batch: torch.Tensor, batch_idx: int) -> list[Detections]:
        probs = self.table[batch]
        return [Detections(int(i), torch.zeros(1, 7), p[None].argmax(dim=1), p[None].max(dim=1).values,
                           p[None]) for i, p in zip(batch.tolist(), probs, strict=True)]


def test_a_real_prediction_run_labels_the_expected_frames(tmp_path: Path) -> None:
    pool = odd_pool()
    table = torch.tensor([[0.9, 0.1]] * DATASET_SIZE)
    # by hand: LC of 37 = 0.55, of 11 = 0.5, of 19 = 0.4; every other frame 0.1. Frames 3 and 8 would be
    # the least confident of all but are labeled / outside the pool, so they are never predicted.
    unsure = {37: [0.45, 0.3], 11: [0.5, 0.5], 19: [0.6, 0.4], 3: [0.2, 0.2], 8: [0.1, 0.1]}
    for index, probs in unsure.items():
        table[index] = torch.tensor(probs)

    callback = ActiveLearningCallback(UncertaintyStrategy(), SelectionRules(budget=3), dataset_size=DATASET_SIZE)
    loader = DataLoader(Subset(FrameIndices(), pool.unlabeled_indices.tolist()), batch_size=4)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
                         callbacks=[callback])
    trainer.predict(LookupDetector(table), loader, return_predictions=False)
    selection = acquire(pool, UncertaintyStrategy(), SelectionRules(budget=3), 1, 0, callback.columns, trainer=trainer)

    assert pool.labeled_in_loop(1).tolist() == [11, 19, 37]
    assert selection.indices.tolist() == [37, 11, 19]
    np.testing.assert_allclose(selection.scores, [0.55, 0.5, 0.4], rtol=1e-6)
    scores = callback.columns["score"]
    assert np.isnan(scores[[3, 8]]).all()
    assert np.isfinite(scores[pool.indices]).sum() == len(pool) - 4  # all unlabeled frames scored



def test_callback_records_drives_times_and_predicted_boxes_for_the_rules() -> None:
    """With a budget in boxes and one pick per drive: costs from boxes scored >= box_min_score, drives
    and times from the batch."""
    pool = odd_pool()
    rules = SelectionRules(budget=5, unit="boxes", frame_cost=1.0, box_cost=1.0, box_min_score=0.5, max_per_drive=1)
    callback = ActiveLearningCallback(UncertaintyStrategy(), rules, dataset_size=DATASET_SIZE)
    unlabeled = pool.unlabeled_indices
    # frames 7, 9 (drive 0) and 11 (drive 1) are the least confident; 9 holds three boxes scored >= 0.5
    special = {7: [[0.45, 0.3]], 9: [[0.4, 0.35], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3]], 11: [[0.5, 0.45]]}
    prediction = [frame(int(i), special.get(int(i), CONFIDENT)) for i in unlabeled]
    batch = {"drive_id": [0 if i < 11 else 1 for i in unlabeled], "timestamp": [0.1 * i for i in unlabeled]}
    trainer = SimpleNamespace(world_size=1)
    callback.on_predict_start(trainer, None)  # type: ignore[arg-type]
    callback.write_on_batch_end(trainer, None, prediction, None, batch, 0, 0)  # type: ignore[arg-type]
    callback.on_predict_end(trainer, None)  # type: ignore[arg-type]

    assert callback.columns["predicted_boxes"][9] == 3 and callback.columns["predicted_boxes"][7] == 0
    assert callback.columns["drive_id"][11] == 1 and callback.columns["timestamp"][11] == pytest.approx(1.1)
    selection = acquire(pool, UncertaintyStrategy(), rules, 1, 0, callback.columns)
    # 9 ranks first (LC 0.6) and costs 1 + 3 = 4 of 5. Then 7 (cost 1) is in drive 0, which has its pick;
    # 11 and every confident frame hold one box scored >= 0.5 and cost 2 > the 1 left: nothing else fits, so
    # the spreading relaxes (two per drive) and 7 spends the last box equivalent
    assert selection.indices.tolist() == [9, 7] and selection.costs.tolist() == [4.0, 1.0]
    assert selection.spread_relaxations == 1 and selection.budget_left == 0
    strict = dataclasses.replace(rules, strict_spread=True)
    selection = acquire(odd_pool(), UncertaintyStrategy(), strict, 1, 0, callback.columns)
    assert selection.indices.tolist() == [9] and selection.costs.tolist() == [4.0]
    assert selection.shortfall == "the strict spreading rules (loop.spread) refuse the 1 unlabeled frame that fits"
