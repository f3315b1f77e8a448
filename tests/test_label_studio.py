"""The Label Studio client against a real Label Studio server (nothing mocked): projects, image tasks with
predictions, annotations submitted through Label Studio's API as an annotator would, the boxes read back, bad
annotations, a server that is down and tokens that are refused; and a labeling round end to end: alcv-round,
alcv-label push, annotations in Label Studio, alcv-label pull, the next round.

The server: one per test session (see tests/label_studio_server.py), started by the xdist controller in the
background (tests/conftest.py) or by the ``label_studio`` fixture. Label Studio not installed is a failure, not a
skip: CI installs it (the README's test command).
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from conftest import TINY, TINY_CAMERA_WORLD, compose_config
from label_studio_server import (
    LEGACY_TOKEN,
    SERVER_ENV,
    Server,
    free_port,
    label_studio_executable,
    not_installed,
)
from PIL import Image

from alcv.data.export import coco_overrides
from alcv.data.export import main as export_main
from alcv.labeling.cli import main as label_main
from alcv.labeling.label_studio import (
    AnnotationError,
    FrameBoxes,
    ImageTask,
    LabelStudio,
    LabelStudioError,
    labeling_config,
)
from alcv.rounds import run_round

CLASSES = ["car", "person", "cart & <trailer>"]


@dataclass(frozen=True)
class Studio:
    """The session's server: its URL and the user's personal access token."""

    url: str
    token: str


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """The session's Label Studio server, ready, with a personal access token; stopped at the end (when this
    process started it), with no process left behind."""
    shared = os.environ.get(SERVER_ENV)
    if shared:
        server, owned = Server.attach(Path(shared)), False
    else:
        executable = label_studio_executable()
        if executable is None:
            pytest.fail(not_installed())
        server, owned = Server.start(tmp_path_factory.mktemp("label-studio"), executable), True
    try:
        server.wait_ready(timeout=600)
        yield Studio(url=server.url, token=server.personal_access_token())
    finally:
        if owned:
            left = server.stop()
            assert not left, f"Label Studio processes {left} outlived the server's stop"


class Annotator:
    """A Label Studio user acting through the API as the labeling UI does (plain HTTP, the user's token)."""

    def __init__(self, studio: Studio) -> None:
        self.url, self.token = studio.url, studio.token
        self._access, self._access_time = "", -math.inf

    @property
    def headers(self) -> dict[str, str]:
        """A fresh access token's header: Label Studio's expire after 5 minutes, which a slow test can outlast."""
        if time.monotonic() - self._access_time > 60:
            answer = requests.post(f"{self.url}/api/token/refresh/", json={"refresh": self.token}, timeout=30)
            answer.raise_for_status()
            self._access, self._access_time = answer.json()["access"], time.monotonic()
        return {"Authorization": f"Bearer {self._access}"}

    def get(self, endpoint: str, **params: Any) -> Any:
        answer = requests.get(f"{self.url}{endpoint}", params=params, headers=self.headers, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def raw(self, endpoint: str) -> bytes:
        answer = requests.get(f"{self.url}{endpoint}", headers=self.headers, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.content

    def annotate(self, task_id: int, result: list[dict[str, Any]], was_cancelled: bool = False) -> int:
        answer = requests.post(f"{self.url}/api/tasks/{task_id}/annotations", headers=self.headers, timeout=30,
                               json={"result": result, "was_cancelled": was_cancelled})
        assert answer.status_code == 201, answer.text
        return int(answer.json()["id"])


def region(box: list[float], label: str | list[str], size: tuple[int, int], rotation: float = 0.0,
           kind: str = "rectanglelabels", region_id: str | None = None) -> dict[str, Any]:
    """A region as Label Studio's editor submits it: XYXY pixels -> percent of the image."""
    width, height = size
    x1, y1, x2, y2 = box
    labels = [label] if isinstance(label, str) else label
    return {"id": region_id or uuid.uuid4().hex[:10], "from_name": "label", "to_name": "image", "type": kind,
            "original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"x": x1 / width * 100, "y": y1 / height * 100, "width": (x2 - x1) / width * 100,
                      "height": (y2 - y1) / height * 100, "rotation": rotation, kind: labels}}


def write_image(path: Path, size: tuple[int, int], seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def image_task(folder: Path, frame: str, size: tuple[int, int], boxes: list[list[float]], labels: list[str],
               scores: list[float], seed: int) -> ImageTask:
    image = write_image(folder / f"{frame}.png", size, seed)
    return ImageTask(frame=frame, image=image, width=size[0], height=size[1], boxes=np.array(boxes).reshape(-1, 4),
                     labels=labels, scores=np.array(scores), model_version="fcos-loop-3")


def new_title() -> str:
    return f"alcv test {uuid.uuid4().hex[:12]}"


def test_labeling_config_escapes_class_names() -> None:
    config = labeling_config(CLASSES)
    root = ElementTree.fromstring(config)
    assert root.find("Image").attrib == {"name": "image", "value": "$image"}
    control = root.find("RectangleLabels")
    assert control.attrib == {"name": "label", "toName": "image"}
    assert [label.get("value") for label in control.iter("Label")] == CLASSES
    for bad in ([], ["car", "car"], ["car", " person"], ["car\n"], "car"):
        with pytest.raises(ValueError, match="class"):
            labeling_config(bad)


def test_round_trip(label_studio: Studio, tmp_path: Path) -> None:
    """Project reuse, upload with predictions, Label Studio showing them, annotations submitted, moved, accepted,
    missing and skipped, and the exact pixel boxes read back."""
    client = LabelStudio(label_studio.url + "/", label_studio.token)
    client.check()
    title = new_title()
    project_id = client.ensure_project(title, CLASSES)
    assert client.ensure_project(title, list(reversed(CLASSES))) == project_id  # reused: same labels
    with pytest.raises(LabelStudioError, match="labels") as refused:
        client.ensure_project(title, ["car", "bus"])
    assert title in str(refused.value) and str(project_id) in str(refused.value)
    assert "'bus'" in str(refused.value) and "'person'" in str(refused.value)

    tasks = [
        image_task(tmp_path, "drive3_000120.png", (64, 48), [[3.5, 4.25, 30.0, 40.0], [40, 10, 63.9, 47]],
                   ["car", "person"], [0.9, 0.35], seed=1),
        image_task(tmp_path, "drive3_000121.png", (50, 37), [[0, 0, 50, 37]], ["cart & <trailer>"], [0.6], seed=2),
        image_task(tmp_path, "drive7 000004.png", (33, 21), [[1, 2, 10, 20]], ["car"], [0.2], seed=3),
        image_task(tmp_path, "drive7_000005.png", (40, 30), [[-2, 5, 12, 31], [20, 20, 20, 25]], ["car", "car"],
                   [0.5, 0.1], seed=4),  # clipped to the image when sent; the zero-width box is not sent
    ]
    task_ids = client.upload_tasks(project_id, tasks)
    assert len(set(task_ids)) == len(tasks)

    annotator = Annotator(label_studio)
    for task, task_id in zip(tasks, task_ids, strict=True):
        shown = annotator.get(f"/api/tasks/{task_id}")
        assert shown["project"] == project_id and shown["data"]["frame"] == task.frame
        assert annotator.raw(shown["data"]["image"]) == task.image.read_bytes()  # the image the editor loads
        [prediction] = shown["predictions"]
        assert prediction["model_version"] == "fcos-loop-3"
        assert prediction["score"] == pytest.approx(float(np.mean(task.scores)))
        sent = np.clip(task.boxes, 0, [task.width, task.height] * 2)
        sent = sent[(sent[:, 2] > sent[:, 0]) & (sent[:, 3] > sent[:, 1])]
        assert len(prediction["result"]) == len(sent)
        for box, predicted in zip(sent, prediction["result"], strict=True):
            value = predicted["value"]
            assert (predicted["original_width"], predicted["original_height"]) == (task.width, task.height)
            assert value["rotation"] == 0 and predicted["type"] == "rectanglelabels"
            assert [value["x"] * task.width / 100, value["y"] * task.height / 100,
                    (value["x"] + value["width"]) * task.width / 100,
                    (value["y"] + value["height"]) * task.height / 100] == pytest.approx(box.tolist(), abs=1e-9)

    moved, accepted, untouched, skipped = task_ids
    size = (64, 48)
    annotator.annotate(moved, [region([1, 1, 5, 5], "car", size)])  # an earlier submission: the later one counts
    first = annotator.get(f"/api/tasks/{moved}")["predictions"][0]["result"][0]
    shifted = {**first, "value": {**first["value"], "x": first["value"]["x"] + 3 / 64 * 100}}
    annotator.annotate(moved, [shifted, region([10.125, 20, 24.5, 33.75], "cart & <trailer>", size)])
    annotator.annotate(accepted, annotator.get(f"/api/tasks/{accepted}")["predictions"][0]["result"])
    annotator.annotate(accepted, [region([1, 1, 5, 5], "car", (50, 37))], was_cancelled=True)  # skipped later
    annotator.annotate(skipped, [region([1, 1, 5, 5], "car", (40, 30))], was_cancelled=True)

    boxes = client.submitted_boxes(project_id, task_ids, CLASSES)
    assert list(boxes) == task_ids
    assert boxes[untouched] is None and boxes[skipped] is None
    assert isinstance(boxes[moved], FrameBoxes) and boxes[moved].frame == "drive3_000120.png"
    np.testing.assert_allclose(boxes[moved].boxes, [[6.5, 4.25, 33.0, 40.0], [10.125, 20, 24.5, 33.75]],
                               rtol=0, atol=1e-6)
    assert boxes[moved].labels == ["car", "cart & <trailer>"] and boxes[moved].boxes.dtype == np.float64
    np.testing.assert_allclose(boxes[accepted].boxes, [[0, 0, 50, 37]], rtol=0, atol=1e-6)
    assert boxes[accepted].labels == ["cart & <trailer>"] and boxes[accepted].frame == "drive3_000121.png"

    # an empty submission: the frame holds nothing (boxes (0, 4))
    annotator.annotate(untouched, [])
    [empty] = client.submitted_boxes(project_id, [untouched], CLASSES).values()
    assert empty.boxes.shape == (0, 4) and empty.labels == [] and empty.frame == "drive7 000004.png"

    other = client.ensure_project(new_title(), CLASSES)
    with pytest.raises(LabelStudioError, match=rf"tasks {moved} are not tasks of project {other}"):
        client.submitted_boxes(other, [moved], CLASSES)
    with pytest.raises(LabelStudioError, match="has no project 999999"):
        client.submitted_boxes(999999, [moved], CLASSES)


#: submitted results that are not boxes alcv reads, and what the error says
BAD_RESULTS = {
    "unknown label": ([region([1, 1, 9, 9], "bus", (40, 30))], "label 'bus' is not one of the classes"),
    "two labels": ([region([1, 1, 9, 9], ["car", "person"], (40, 30))], "has 2 labels"),
    "rotated": ([region([1, 1, 9, 9], "car", (40, 30), rotation=12.5)], "rotated by 12.5 degrees"),
    "past the left edge": ([region([-1, 1, 9, 9], "car", (40, 30))], "left edge"),
    "past the right edge": ([region([30, 1, 40.7, 9], "car", (40, 30))], "right edge"),
    "past the bottom edge": ([region([1, 10, 9, 31], "car", (40, 30))], "bottom edge"),
    "zero width": ([region([5, 5, 5, 9], "car", (40, 30))], "zero width"),
    "a polygon": ([region([1, 1, 9, 9], "car", (40, 30), kind="polygonlabels")], "'polygonlabels' result"),
}


@pytest.fixture(scope="module")
def bad_tasks(label_studio: Studio, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, int]]:
    """A project with a task (no predictions) per case of BAD_RESULTS: its id and the task ids by case."""
    client = LabelStudio(label_studio.url, label_studio.token)
    project_id = client.ensure_project(new_title(), CLASSES)
    folder = tmp_path_factory.mktemp("bad-annotations")
    tasks = [image_task(folder, f"bad {case}.png", (40, 30), [], [], [], seed) for seed, case in enumerate(BAD_RESULTS)]
    return project_id, dict(zip(BAD_RESULTS, client.upload_tasks(project_id, tasks), strict=True))


@pytest.mark.parametrize("case", list(BAD_RESULTS))
def test_bad_annotations_name_the_task_and_frame(label_studio: Studio, bad_tasks: tuple[int, dict[str, int]],
                                                 case: str) -> None:
    result, problem = BAD_RESULTS[case]
    project_id, task_ids = bad_tasks
    task_id = task_ids[case]
    annotation_id = Annotator(label_studio).annotate(task_id, result)
    with pytest.raises(AnnotationError, match=problem) as bad:
        LabelStudio(label_studio.url, label_studio.token).submitted_boxes(project_id, [task_id], CLASSES)
    assert f"task {task_id} (frame 'bad {case}.png'), annotation {annotation_id}" in str(bad.value)
    assert bad.value.task_id == task_id and bad.value.frame == f"bad {case}.png"
    assert isinstance(bad.value, ValueError) and isinstance(bad.value, LabelStudioError)


def test_boxes_on_the_edge_and_turned_a_quarter(label_studio: Studio, tmp_path: Path) -> None:
    """Within 0.5 px past an edge a box is clipped; a quarter turn is still an axis-aligned box."""
    client = LabelStudio(label_studio.url, label_studio.token)
    project_id = client.ensure_project(new_title(), CLASSES)
    [task_id] = client.upload_tasks(project_id, [image_task(tmp_path, "edge.png", (40, 30), [], [], [], 6)])
    turned = region([20, 5, 30, 9], "person", (40, 30), rotation=90)  # turns around (20, 5): x 16..20, y 5..15
    Annotator(label_studio).annotate(task_id, [region([-0.4, 0, 40.3, 30.49], "car", (40, 30)), turned])
    [boxes] = client.submitted_boxes(project_id, [task_id], CLASSES).values()
    np.testing.assert_allclose(boxes.boxes, [[0, 0, 40, 30], [16, 5, 20, 15]], rtol=0, atol=1e-6)


def test_upload_refuses_bad_input_before_sending(label_studio: Studio, tmp_path: Path) -> None:
    client = LabelStudio(label_studio.url, label_studio.token)
    project_id = client.ensure_project(new_title(), CLASSES)
    good = image_task(tmp_path, "good.png", (40, 30), [[1, 1, 9, 9]], ["car"], [0.5], 7)
    with pytest.raises(ValueError, match=r"frames \['good.png'\] are given more than once"):
        client.upload_tasks(project_id, [good, good])
    wrong_size = ImageTask("small.png", good.image, 41, 30, good.boxes, good.labels, good.scores, "m")
    with pytest.raises(ValueError, match=r"'small.png'.*40 x 30 pixels, the task says 41 x 30"):
        client.upload_tasks(project_id, [good, wrong_size])
    missing = ImageTask("gone.png", tmp_path / "gone.png", 40, 30, good.boxes, good.labels, good.scores, "m")
    with pytest.raises(FileNotFoundError, match=r"'gone\.png'"):
        client.upload_tasks(project_id, [missing])
    unknown = ImageTask("bus.png", good.image, 40, 30, good.boxes, ["bus"], good.scores, "m")
    with pytest.raises(LabelStudioError, match=r"frame 'bus.png': labels \['bus'\] are not labels of project"):
        client.upload_tasks(project_id, [good, unknown])
    with pytest.raises(ValueError, match="'boxes' must have shape"):
        ImageTask("f", good.image, 40, 30, np.zeros((2, 3)), ["car", "car"], [0.1, 0.2], "m")
    with pytest.raises(ValueError, match="'scores' must be 1 finite"):
        ImageTask("f", good.image, 40, 30, good.boxes, ["car"], [np.nan], "m")
    assert Annotator(label_studio).get(f"/api/projects/{project_id}")["task_number"] == 0  # nothing was sent
    with pytest.raises(LabelStudioError, match="has no project 999999"):
        client.upload_tasks(999999, [good])


def test_server_down_and_refused_tokens(label_studio: Studio) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    for token in (label_studio.token, LEGACY_TOKEN):
        with pytest.raises(LabelStudioError, match="is not reachable") as unreachable:
            LabelStudio(down, token, timeout=5).check()
        assert down in str(unreachable.value) and token not in str(unreachable.value)

    header, payload, signature = label_studio.token.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    legacy_disabled = "legacy token authentication has been disabled"
    for token, kind, detail in ((forged, "personal access token", "Token is invalid"),
                                ("f" * 40, "legacy token", "Invalid token"),
                                (LEGACY_TOKEN, "legacy token", legacy_disabled)):
        with pytest.raises(LabelStudioError, match=f"refused the {kind}") as refused:
            LabelStudio(label_studio.url, token).check()
        message = str(refused.value)
        assert label_studio.url in message and token not in message and label_studio.token not in message
        assert detail in message and "Account & Settings > Personal Access Token" in message

    client = LabelStudio(label_studio.url, label_studio.token)
    client.check()
    client._access = "eyJ.eyJ.c2ln"  # an access token the server stopped taking before its exp: refreshed, once
    client.check()
    assert client._access != "eyJ.eyJ.c2ln"

    with pytest.raises(LabelStudioError, match="404"):
        LabelStudio(label_studio.url + "/not-label-studio", LEGACY_TOKEN).check()
    for url, token in (("localhost:8080", "x"), ("ftp://host", "x"), ("http://host", " ")):
        with pytest.raises(ValueError):
            LabelStudio(url, token)
    assert label_studio.token not in repr(LabelStudio(label_studio.url, label_studio.token))


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_camera_round_goes_to_label_studio_and_its_labels_into_the_next_round(
        label_studio: Studio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    export_main(["coco", str(tmp_path / "coco"), "--labeled-pool", "12", *TINY_CAMERA_WORLD])
    splits = {split: {"images": str(tmp_path / "coco" / split / "images"),
                      "annotations": str(tmp_path / "coco" / split / "instances.json")}
              for split in ("pool", "val", "test")}
    rounds = tmp_path / "rounds"
    training = [override for override in TINY if not override.startswith(("data.dataset.world", "loop."))]
    overrides = ["data=coco", "model=fcos_tiny", *coco_overrides(splits, ["vehicle", "pedestrian", "golf_cart"]),
                 *training, "logger=none", "data.num_workers=0", "loop.query_size=3", "round.min_score=0.0",
                 f"round.dir={rounds}"]
    run_round(compose_config(*overrides, output_dir=rounds, config_name="round"))
    folder = rounds / "round_000"
    selection = json.loads((folder / "selection.json").read_text())
    frames = [frame["frame"] for frame in selection["frames"]]
    pool_file = tmp_path / "coco" / "pool" / "instances.json"
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)

    with pytest.raises(SystemExit):
        label_main(["pull", str(folder)])
    assert "never pushed" in capsys.readouterr().err
    title = new_title()
    label_main(["push", str(folder), "--project", title])
    pushed = json.loads((folder / "label_studio.json").read_text())
    assert sorted(pushed["tasks"]) == sorted(frames) and label_studio.token not in json.dumps(pushed)
    label_main(["push", str(folder), "--project", title])  # pushed already: nothing is uploaded twice
    assert "nothing was done" in capsys.readouterr().out

    # the annotator sees the model's boxes as predictions, moves one box of the first image, accepts the second
    # image's predictions, labels the third with a class the project does not have
    annotator = Annotator(label_studio)
    tasks = {frame: annotator.get(f"/api/tasks/{task_id}") for frame, task_id in pushed["tasks"].items()}
    first, second, third = (selection["frames"][rank] for rank in range(3))
    size = tuple(first["image_size"])
    predicted = tasks[first["frame"]]["predictions"][0]["result"]
    assert len(predicted) == sum(1 for x1, y1, x2, y2 in first["boxes"] if x2 > x1 and y2 > y1)
    moved = [[10.0, 12.0, 60.0, 40.0]]
    annotator.annotate(pushed["tasks"][first["frame"]], [region(moved[0], "pedestrian", size)])
    accepted = [result for result in tasks[second["frame"]]["predictions"][0]["result"]
                if min(result["value"]["width"], result["value"]["height"]) >= 2]  # but for the specks
    annotator.annotate(pushed["tasks"][second["frame"]], accepted)
    wrong = annotator.annotate(pushed["tasks"][third["frame"]], [region([1, 1, 20, 20], "tree", size)])

    before = _files(tmp_path / "coco")
    with pytest.raises(SystemExit):
        label_main(["pull", str(folder)])
    error = capsys.readouterr().err
    assert "tree" in error and third["frame"] in error
    assert _files(tmp_path / "coco") == before  # nothing written
    requests.delete(f"{label_studio.url}/api/annotations/{wrong}", headers=annotator.headers,
                    timeout=30).raise_for_status()

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "not-a-token")
    with pytest.raises(SystemExit):
        label_main(["pull", str(folder)])
    assert "refused" in capsys.readouterr().err and _files(tmp_path / "coco") == before
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)

    label_main(["pull", str(folder)])
    printed = capsys.readouterr().out
    assert "wrote the labels of 2 of 3 selected frames" in printed and third["frame"] in printed
    pool = json.loads(pool_file.read_text())
    ids = {image["file_name"]: image["id"] for image in pool["images"]}
    flagged = {image["file_name"] for image in pool["images"] if image.get("unlabeled")}
    assert first["frame"] not in flagged and second["frame"] not in flagged and third["frame"] in flagged
    boxes = {frame: [a["bbox"] for a in pool["annotations"] if a["image_id"] == ids[frame]] for frame in frames}
    x1, y1, x2, y2 = moved[0]
    assert np.allclose(boxes[first["frame"]], [[x1, y1, x2 - x1, y2 - y1]], atol=1e-6)
    accepted_boxes = [[r["value"]["x"] * size[0] / 100, r["value"]["y"] * size[1] / 100,
                       r["value"]["width"] * size[0] / 100, r["value"]["height"] * size[1] / 100] for r in accepted]
    assert np.allclose(np.array(boxes[second["frame"]]).reshape(-1, 4), np.array(accepted_boxes).reshape(-1, 4),
                       atol=1e-6)

    # the next round waits for the third frame unless told to go on; then it trains on the two new frames
    assert run_round(compose_config(*overrides, output_dir=rounds, config_name="round")) is None
    summary = run_round(compose_config(*overrides, "round.allow_missing=true", output_dir=rounds,
                                       config_name="round"))
    assert summary is not None and (summary["round"], summary["labeled_frames"], summary["new_frames"]) == (1, 14, 2)
