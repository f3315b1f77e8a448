"""What a study's strategies picked, described from the runs' label pools and a hand-made dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alcv.pool import LabelPool
from alcv.run_files import RUN_FILE
from alcv.study.selections import POOL_FILE, POOL_ROW, plot_selection_stats, selection_table

CLASSES = ("vehicle", "golf_cart")


class HandMadeDataset:
    """Pool frames 0-7 in two drives (0-3 and 4-7, at 0.1 s steps); frame ``i`` holds ``BOXES[i]`` labels;
    frames 8-9 are the test split."""

    class_names = CLASSES
    BOXES = ((0, 0), (0,), (), (1,), (0, 0, 0), (1, 1), (0,), ())

    def split_indices(self, split: str) -> np.ndarray:
        return np.arange(8) if split == "pool" else np.arange(8, 10)

    def box_labels(self, index: int) -> np.ndarray:
        return np.array(self.BOXES[index], dtype=np.int64)

    def drive_and_time(self, index: int) -> tuple[int, float]:
        return index // 4, (index % 4) * 0.1


def write_run(folder: Path, labeled_at: list[int]) -> str:
    folder.mkdir(parents=True)
    (folder / RUN_FILE).write_text(json.dumps({"config": {"data": {"dataset": {"_target_": "hand.made"}}}}))
    pool = LabelPool(list(range(8)))
    for loop in sorted(set(labeled_at) - {-1}):
        pool.label(np.flatnonzero(np.array(labeled_at) == loop), loop)
    pool.save(folder / POOL_FILE)
    return str(folder)


def test_the_picks_of_each_acquisition_beside_the_pool(tmp_path: Path) -> None:
    # seed 0: frame 0 at first; loop 1 picks 1 (next to 0) and 5; loop 2 picks 2 (next to 1) and 7, both empty
    # seed 1: frame 4 at first; loop 1 picks 3 and 6 (none next to a labeled frame); loop 2 picks 0
    # run c (strategy t) completed loop 0 only: its pool, saved during loop 1's commit, already holds loop 2's
    # picks (frames 2 and 3), which must not count
    runs = [write_run(tmp_path / "a", [0, 1, 2, -1, -1, 1, -1, 2]),
            write_run(tmp_path / "b", [2, -1, -1, 1, 0, -1, 1, -1]),
            write_run(tmp_path / "c", [0, 1, 2, 2, -1, -1, -1, -1])]
    # the picks' scores as the runs saved them: seed 0's loop 1 at 0.9 and 0.7 (loop 0's random set has none);
    # seed 1 has no selections.jsonl
    (tmp_path / "a" / "selections.jsonl").write_text(
        "\n".join(json.dumps(line) for line in ({"loop": 0, "indices": [0], "scores": None},
                                                {"loop": 1, "indices": [1, 5], "scores": [0.9, 0.7]},
                                                {"loop": 2, "indices": [2, 7], "scores": [None, 0.2]})) + "\n")
    records = pd.DataFrame({"run": [runs[0], runs[0], runs[1], runs[1], runs[2]], "study_type": "active_learning",
                            "strategy": ["s", "s", "s", "s", "t"], "seed": [0, 0, 1, 1, 0], "loop": [0, 1, 0, 1, 0]})
    built: list[dict] = []
    table = selection_table(records, CLASSES, build_dataset=lambda config: built.append(config) or HandMadeDataset())
    assert built == [{"_target_": "hand.made"}]  # one dataset per data config
    rows = table.set_index(["strategy", "loop"])
    assert table.loc[table["strategy"] == "t", "loop"].tolist() == [1]
    first = rows.loc[("s", 1)]
    # seed 0 picks 1 box of 1 and 2 of 5: 1.5 boxes/frame; seed 1 picks frames 3 and 6: 1 box each
    assert first["boxes_per_frame"] == pytest.approx((1.5 + 1.0) / 2)
    assert first["empty"] == 0.0
    assert first["share/golf_cart"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert first["drives"] == 1.0  # both seeds pick from both drives
    assert first["near_duplicates"] == pytest.approx((1 / 2 + 0) / 2)  # 1 is 0.1 s from 0
    assert (first["score_low"], first["score_high"]) == pytest.approx((0.7, 0.9))  # seed 1's NaN left out
    assert (rows.loc[("s", 2), "score_low"], rows.loc[("s", 2), "score_high"]) == pytest.approx((0.2, 0.2))
    assert np.isnan(rows.loc[("t", 1), "score_low"])  # no selections.jsonl
    second = rows.loc[("s", 2)]
    assert second["empty"] == pytest.approx((1 + 0) / 2) and second["boxes_per_frame"] == pytest.approx((0 + 2) / 2)
    assert second["near_duplicates"] == pytest.approx((1 / 2 + 0) / 2)
    assert second["frames"] == pytest.approx((2 + 1) / 2) and second["seeds"] == 2
    pool = table[table["strategy"] == POOL_ROW].iloc[0]
    assert pool["frames"] == 8 and pool["boxes_per_frame"] == pytest.approx(10 / 8)
    assert pool["empty"] == pytest.approx(2 / 8) and pool["share/golf_cart"] == pytest.approx(3 / 10)
    assert np.isnan(pool["drives"]) and np.isnan(pool["near_duplicates"])
    plot_selection_stats(table, CLASSES)  # draws without error for any table it returns


def test_runs_without_their_pool_are_skipped_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "bare").mkdir()
    notes: list[str] = []
    records = pd.DataFrame({"run": [str(tmp_path / "bare")], "study_type": "active_learning", "strategy": "s",
                            "seed": [0], "loop": [0]})
    assert selection_table(records, CLASSES, build_dataset=lambda config: HandMadeDataset(), notes=notes).empty
    assert notes == [f"{tmp_path / 'bare'}: no {POOL_FILE} or {RUN_FILE}; its picks are not described"]
