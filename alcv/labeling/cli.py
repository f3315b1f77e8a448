"""``alcv-label``: the frames a labeling round selected, out to annotators and their labels back into the data.

::

    alcv-label import ROUND_DIR/round_NNN --labels PATH [--overwrite]
    alcv-label push ROUND_DIR/round_NNN --project NAME [--label-studio URL]
    alcv-label pull ROUND_DIR/round_NNN [--overwrite]

``import`` reads finished labels from files (KITTI label files, or a COCO JSON; :mod:`alcv.labeling.formats`).
``push`` creates (or reuses) the Label Studio project ``NAME`` for the data's classes and uploads the round's
images as tasks with the model's boxes as predictions; it records the project and the tasks in
``round_NNN/label_studio.json`` (never the token). ``pull`` fetches the submitted annotations of those tasks.
Both ``import`` and ``pull`` check the labels and write them into the data folder (all or nothing; labels a frame
already has are kept unless ``--overwrite``) and report the selected frames still without labels.

Label Studio's address is ``--label-studio`` or ``LABEL_STUDIO_URL``; its token (a personal access token, or a
legacy token) is ``LABEL_STUDIO_API_KEY``, read from the environment only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alcv.config import register_resolvers
from alcv.labeling.label_studio import ImageTask, LabelStudio, LabelStudioError
from alcv.labeling.rounds import Imported, OpenedRound, open_round, write_round_labels
from alcv.safe_io import write_text_atomically

#: where ``push`` records the Label Studio project and tasks of a round, in ``round_NNN/``
PUSH_FILE = "label_studio.json"
URL_VARIABLE, TOKEN_VARIABLE = "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"


def _client(url: str | None) -> LabelStudio:
    url = url or os.environ.get(URL_VARIABLE)
    token = os.environ.get(TOKEN_VARIABLE)
    if not url:
        raise ValueError(f"no Label Studio address: give --label-studio URL or set {URL_VARIABLE}")
    if not token:
        raise ValueError(f"no Label Studio token: set {TOKEN_VARIABLE} (Label Studio: Account & Settings > "
                         "Personal Access Token)")
    client = LabelStudio(url, token)
    client.check()
    return client


def _camera_round(opened: OpenedRound) -> None:
    if opened.selection.get("modality") != "camera":
        raise ValueError(f"{opened.folder}: round {opened.number} selected LiDAR frames, which Label Studio cannot "
                         f"show: they are in {opened.folder / 'kitti'} for a 3D labeling tool; bring the labeled "
                         f"label_2 files back with alcv-label import {opened.folder} --labels <folder>")


def push(folder: Path, project: str, url: str | None) -> dict[str, Any]:
    """Upload round ``folder``'s images to the Label Studio project ``project`` (see the module docstring);
    returns the record written to ``label_studio.json``. A round pushed already is not pushed again."""
    opened = open_round(folder)
    _camera_round(opened)
    record_path = opened.folder / PUSH_FILE
    if record_path.exists():
        record = json.loads(record_path.read_text())
        print(f"alcv-label: round {opened.number} was pushed already, to project {record['project']!r} (id "
              f"{record['project_id']}) at {record['url']}; nothing was done")
        return record
    client = _client(url)
    class_names = list(opened.selection["class_names"])
    project_id = client.ensure_project(project, class_names)
    tasks = [ImageTask(frame=frame["frame"], image=Path(frame["file"]), width=frame["image_size"][0],
                       height=frame["image_size"][1], boxes=frame["boxes"], labels=frame["labels"],
                       scores=frame["scores"], model_version=f"alcv round {opened.number}")
             for frame in opened.selection["frames"]]
    task_ids = client.upload_tasks(project_id, tasks)
    record = {"url": client.url, "project": project, "project_id": project_id,
              "tasks": {task.frame: task_id for task, task_id in zip(tasks, task_ids, strict=True)}}
    write_text_atomically(record_path, json.dumps(record, indent=1))
    print(f"alcv-label: pushed {len(tasks)} images of round {opened.number} to project {project!r} (id "
          f"{project_id}) at {client.url}; pull the annotations with: alcv-label pull {opened.folder}")
    return record


def pull(folder: Path, overwrite: bool, url: str | None) -> Imported:
    """Write the submitted annotations of round ``folder``'s Label Studio tasks into its data (the selected frames
    without a submitted annotation are reported missing)."""
    opened = open_round(folder)
    _camera_round(opened)
    record_path = opened.folder / PUSH_FILE
    if not record_path.is_file():
        raise ValueError(f"{opened.folder}: round {opened.number} was never pushed ({record_path} not found); push "
                         f"it first: alcv-label push {opened.folder} --project NAME")
    record = json.loads(record_path.read_text())
    client = _client(url or record["url"])
    names = {task_id: frame for frame, task_id in record["tasks"].items()}
    submitted = client.submitted_boxes(record["project_id"], list(names), list(opened.selection["class_names"]))
    labels = {names[task_id]: (found.boxes, found.labels) for task_id, found in submitted.items() if found is not None}
    return write_round_labels(opened, labels, f"Label Studio project {record['project_id']} at {client.url}",
                              overwrite)


def import_files(folder: Path, source: Path, overwrite: bool) -> Imported:
    """Write the labels in ``source`` (files of the data's format) into round ``folder``'s data (the selected frames
    without labels there are reported missing)."""
    opened = open_round(folder)
    labels = opened.data_format.read_labels(opened.dataset, source)
    return write_round_labels(opened, labels, str(source), overwrite)


def _report(imported: Imported, written_from: str) -> None:
    missing = imported.missing
    print(f"alcv-label: wrote the labels of {len(imported.written)} of {len(imported.written) + len(missing)} "
          f"selected frames from {written_from} into the data")
    if missing:
        print(f"{len(missing)} selected frame(s) have no labels yet: {', '.join(missing[:20])}"
              f"{' ...' if len(missing) > 20 else ''}")


def main(argv: Sequence[str] | None = None) -> None:
    """``alcv-label {import,push,pull} ROUND ...`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="alcv-label", description="Send the frames a labeling round selected to "
                                     "annotators and write their labels into the data.")
    commands = parser.add_subparsers(dest="command", required=True)
    importer = commands.add_parser("import", help="labels from files: KITTI label files or a COCO JSON")
    importer.add_argument("round", type=Path, help="the round's folder, ROUND_DIR/round_NNN")
    importer.add_argument("--labels", type=Path, required=True, help="the labeled files")
    importer.add_argument("--overwrite", action="store_true", help="replace labels a frame already has")
    pusher = commands.add_parser("push", help="upload a camera round's images to Label Studio")
    pusher.add_argument("round", type=Path)
    pusher.add_argument("--project", required=True, help="the Label Studio project's title (made if new)")
    pusher.add_argument("--label-studio", default=None, help=f"Label Studio's URL (default: ${URL_VARIABLE})")
    puller = commands.add_parser("pull", help="the submitted Label Studio annotations of a pushed round")
    puller.add_argument("round", type=Path)
    puller.add_argument("--overwrite", action="store_true", help="replace labels a frame already has")
    puller.add_argument("--label-studio", default=None, help="Label Studio's URL (default: the one pushed to)")
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    register_resolvers()
    try:
        if args.command == "push":
            push(args.round, args.project, args.label_studio)
            return
        if args.command == "pull":
            imported, source = pull(args.round, args.overwrite, args.label_studio), "Label Studio"
        else:
            imported, source = import_files(args.round, args.labels, args.overwrite), str(args.labels)
    except (ValueError, FileNotFoundError, LabelStudioError) as error:
        parser.exit(2, f"alcv-label: {error}\n")
    _report(imported, source)


if __name__ == "__main__":
    main()
