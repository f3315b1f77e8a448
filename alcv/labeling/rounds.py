"""A completed labeling round as ``alcv-label`` reads it, and finished labels written back into its data.

``open_round(ROUND_DIR/round_NNN)`` checks that round ``NNN`` completed (its results line is in the round
folder's ``results.jsonl``), builds the data from the round folder's own config (``run.json``) and reads the
round's ``selection.json``. :func:`write_round_labels` checks labels against the selection and writes them with
the data's writers (:mod:`alcv.labeling.formats`), then appends what it did to ``round_NNN/imported.jsonl``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import OmegaConf

from alcv.labeling.formats import LabelFormat, label_format
from alcv.rounds import ROUND_PREFIX, SELECTION_FILE
from alcv.run_files import RUN_FILE, read_run_config
from alcv.run_records import RESULTS_FILE, append_jsonl, read_results
from alcv.safe_io import read_json

#: what each import of labels into a round's data did, one JSON line per import, in ``round_NNN/``
IMPORTS_FILE = "imported.jsonl"


@dataclass(frozen=True)
class OpenedRound:
    """A completed round: its ``folder`` (``round_NNN``), ``number``, the ``dataset`` built from the round folder's
    config, the data's :class:`~alcv.labeling.formats.LabelFormat` and the round's ``selection`` document."""

    folder: Path
    number: int
    dataset: Any
    data_format: LabelFormat
    selection: dict[str, Any]

    @property
    def selected(self) -> list[str]:
        """The names of the selected frames, best first."""
        return [frame["frame"] for frame in self.selection["frames"]]


def open_round(folder: Path | str) -> OpenedRound:
    """The completed round in ``folder`` (a ``round_NNN`` folder of a round folder).

    Raises:
        FileNotFoundError: ``folder`` is no round folder of alcv-round (no ``round_NNN`` name, no ``run.json``
            beside it, no ``selection.json`` in it).
        ValueError: the round did not complete (no results line), or its files are malformed.
    """
    folder = Path(folder)
    match = re.fullmatch(rf"{ROUND_PREFIX}_(\d{{3,}})", folder.name)
    if match is None or not (folder.parent / RUN_FILE).is_file():
        raise FileNotFoundError(f"{folder}: not a round of alcv-round (expected a {ROUND_PREFIX}_NNN folder beside "
                                f"a {RUN_FILE})")
    number = int(match.group(1))
    completed = len(read_results(folder.parent)) if (folder.parent / RESULTS_FILE).exists() else 0
    if number >= completed:
        raise ValueError(f"{folder}: round {number} did not complete ({folder.parent / RESULTS_FILE} records "
                         f"{completed} round(s)); run alcv-round again to finish it")
    path = folder / SELECTION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; {folder} is not a complete round")
    selection = read_json(path, "selection file")
    if not isinstance(selection, dict) or not isinstance(selection.get("frames"), list):
        raise ValueError(f"{path}: field 'frames' missing; expected the selected frames as a list")
    config = read_run_config(folder.parent)
    dataset = hydra.utils.instantiate(OmegaConf.create(config["data"])).dataset
    return OpenedRound(folder, number, dataset, label_format(dataset), selection)


@dataclass(frozen=True)
class Imported:
    """What an import wrote: the ``written`` frames (sorted) and the selected frames still ``missing`` labels (best
    first)."""

    written: list[str]
    missing: list[str]


def write_round_labels(opened: OpenedRound, labels: Mapping[str, Any], source: str, overwrite: bool = False
                       ) -> Imported:
    """Write ``labels`` (frame name -> labels in the data format's form, each frame one of the round's selection)
    into the round's data (checked; nothing is written when a check fails) and record the import in
    ``round_NNN/imported.jsonl``.

    Raises:
        ValueError: a frame is not in the selection, or the data's writer refused a label (naming the frame).
    """
    foreign = sorted(set(labels) - set(opened.selected))
    if foreign:
        raise ValueError(f"{source}: {len(foreign)} frame(s) are not in round {opened.number}'s selection (e.g. "
                         f"{foreign[:5]}); nothing was written")
    opened.dataset.write_pool_labels(labels, overwrite=overwrite)
    imported = Imported(sorted(labels), [name for name in opened.selected if name not in labels])
    append_jsonl(opened.folder / IMPORTS_FILE, {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "source": source,
                                                "frames": imported.written, "missing": imported.missing,
                                                "overwrite": overwrite})
    return imported
