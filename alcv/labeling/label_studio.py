"""A Label Studio client for labeling rounds: a project per class list, image tasks with the model's boxes as
pre-annotations, and the boxes annotators submitted, read back in pixels.

Plain HTTP (``requests``) against Label Studio's REST API, so alcv needs no Label Studio package; written and tested
against Label Studio 1.23 (the community edition, its default local media storage).

Authentication: Label Studio 1.23 gives each user a *personal access token* (a JWT; Account & Settings > Personal
Access Token). It is a refresh token: :class:`LabelStudio` trades it for a short-lived access token at
``POST /api/token/refresh/`` and sends that as ``Authorization: Bearer <access>``, refreshing it before it expires
(and once more when a request is answered 401). A key that is not a JWT is a *legacy* token, sent as
``Authorization: Token <key>``; Label Studio 1.23 refuses those unless the organization enables legacy tokens.

The labeling config alcv uses (:func:`labeling_config`): an ``<Image name="image" value="$image"/>`` and a
``<RectangleLabels name="label" toName="image">`` with one ``<Label>`` per class. A task's data is
``{"image": <url of the uploaded image>, "frame": <frame name>}``; its pre-annotation is one prediction whose
result holds a ``rectanglelabels`` region per box, in Label Studio's coordinates: ``x``, ``y``, ``width``,
``height`` in percent of the image's ``original_width`` / ``original_height``, ``rotation`` 0.

Errors: :class:`LabelStudioError` for everything a user can cause or meet at the server (it is not reachable, it
refuses the token, it answers something unexpected, a project or task is not what alcv needs), with
:class:`AnnotationError` (also a ``ValueError``) for a submitted annotation that is not a set of boxes alcv can
read; ``ValueError`` / ``TypeError`` for arguments that break the contract before anything is sent. No message
holds the token.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import mimetypes
import re
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import quoteattr

import numpy as np
import requests
from PIL import Image as PILImage

#: the names the labeling config gives its image and its box control (the ``to_name`` / ``from_name`` of results)
IMAGE_NAME = "image"
LABEL_NAME = "label"
#: the only result type that holds a box alcv reads
RESULT_TYPE = "rectanglelabels"
#: how far (pixels) a submitted box may reach past an image edge; what lies past it within this is clipped off
EDGE_TOLERANCE = 0.5
#: how far (degrees) a submitted box's rotation may be from a multiple of 90 degrees
ROTATION_TOLERANCE = 1e-6
#: image file suffixes Label Studio's import accepts (its ``SUPPORTED_EXTENSIONS`` that are images)
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")

#: the endpoint that trades a personal access token for an access token
_REFRESH_ENDPOINT = "/api/token/refresh/"
#: an access token is refreshed this many seconds before its ``exp``
_REFRESH_MARGIN = 30.0
#: files and bytes per upload request (Label Studio takes at most 100 files and 250 MB per request by default)
_UPLOAD_FILES = 50
_UPLOAD_BYTES = 100 * 1024 * 1024
#: tasks per JSON import request, task ids per export request (they travel in the query string)
_IMPORT_TASKS = 500
_EXPORT_IDS = 200
#: characters of a response body quoted in an error
_BODY_EXCERPT = 300
#: three base64url segments: a JWT (a personal access token), where a legacy token is one hex string
_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_TOKEN_HELP = ("use a valid token: in Label Studio, Account & Settings > Personal Access Token (create one and pass "
               "it whole), or the legacy Access Token where the organization enables legacy tokens")


class LabelStudioError(RuntimeError):
    """Label Studio is not reachable, refuses the token, answers something unexpected, or holds a project or task
    that is not what alcv needs. The message names the server, the endpoint or the object, and never the token."""


class AnnotationError(LabelStudioError, ValueError):
    """A submitted annotation that is not a set of boxes alcv can read: a label that is not a class, a rotated box,
    a box outside the image or without area, a region with several labels or another result type. The message
    names the task id, the frame, the annotation and the region; :attr:`task_id` and :attr:`frame` hold the first
    two."""

    def __init__(self, message: str, task_id: int, frame: str) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.frame = frame


@dataclass(frozen=True, eq=False)
class ImageTask:
    """One image to label, with the model's boxes as its pre-annotation.

    Attributes:
        frame: the frame's name, unique among the tasks of one :meth:`LabelStudio.upload_tasks` call (an image file
            name, say); it is the task's ``data.frame`` and what :class:`FrameBoxes` gives back.
        image: the local image file (uploaded to Label Studio; its suffix one of :data:`IMAGE_SUFFIXES`).
        width, height: the image's size in pixels (checked against the file).
        boxes: ``(M, 4)`` float XYXY pixel boxes, the model's predictions (``x2 >= x1``, ``y2 >= y1``). They are
            clipped to the image when sent; a box with no area left is not sent.
        labels: the M boxes' class names (each one of the project's labels).
        scores: ``(M,)`` the boxes' scores; the prediction's score is their mean (no score without boxes).
        model_version: the prediction's ``model_version`` in Label Studio.

    Construction checks the fields (``TypeError`` / ``ValueError`` naming the frame and the field) and stores
    ``image`` as a ``Path``, ``boxes`` as float64 ``(M, 4)``, ``labels`` as a tuple and ``scores`` as float64.
    """

    frame: str
    image: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: Sequence[str]
    scores: np.ndarray
    model_version: str

    def __post_init__(self) -> None:
        if not isinstance(self.frame, str) or not self.frame:
            raise ValueError(f"ImageTask: 'frame' must be a non-empty string, got {self.frame!r}")
        where = f"ImageTask {self.frame!r}"
        if not isinstance(self.image, str | Path):
            raise TypeError(f"{where}: 'image' must be a path, got {type(self.image).__name__}")
        object.__setattr__(self, "image", Path(self.image))
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
                raise ValueError(f"{where}: {name!r} must be a positive int (pixels), got {value!r}")
            object.__setattr__(self, name, int(value))
        boxes = np.asarray(self.boxes, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"{where}: 'boxes' must have shape (M, 4) (XYXY pixels), got {boxes.shape}")
        if not np.isfinite(boxes).all():
            raise ValueError(f"{where}: 'boxes' holds a value that is not finite")
        reversed_boxes = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
        if reversed_boxes.size:
            raise ValueError(f"{where}: box {int(reversed_boxes[0])} {boxes[reversed_boxes[0]].tolist()} is not "
                             f"XYXY (x2 < x1 or y2 < y1)")
        object.__setattr__(self, "boxes", boxes)
        if isinstance(self.labels, str) or not isinstance(self.labels, Sequence | np.ndarray):
            raise TypeError(f"{where}: 'labels' must be a sequence of class names, got {self.labels!r}")
        labels = tuple(self.labels)
        if len(labels) != len(boxes) or not all(isinstance(label, str) for label in labels):
            raise ValueError(f"{where}: 'labels' must be {len(boxes)} class names (one per box), got {labels!r}")
        labels = tuple(str(label) for label in labels)
        object.__setattr__(self, "labels", labels)
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if scores.shape != (len(boxes),) or not np.isfinite(scores).all():
            raise ValueError(f"{where}: 'scores' must be {len(boxes)} finite numbers (one per box), got "
                             f"{np.asarray(self.scores).tolist()!r}")
        object.__setattr__(self, "scores", scores)
        if not isinstance(self.model_version, str):
            raise TypeError(f"{where}: 'model_version' must be a string, got {self.model_version!r}")


@dataclass(frozen=True, eq=False)
class FrameBoxes:
    """The boxes of a task's latest submitted annotation, in pixels: ``boxes`` ``(M, 4)`` float64 XYXY within the
    image, ``labels`` their M class names, ``frame`` the task's ``data.frame``."""

    frame: str
    boxes: np.ndarray
    labels: list[str]


def labeling_config(class_names: Sequence[str]) -> str:
    """The labeling config of an alcv project: the image and a box tool with one label per class, in order.

    Class names must be distinct non-empty strings without surrounding whitespace or control characters
    (``ValueError`` otherwise); they are XML-escaped.
    """
    names = _check_class_names(class_names)
    labels = "".join(f"\n    <Label value={quoteattr(name)}/>" for name in names)
    return (f'<View>\n  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}"/>\n'
            f'  <RectangleLabels name="{LABEL_NAME}" toName="{IMAGE_NAME}">{labels}\n  </RectangleLabels>\n</View>\n')


class LabelStudio:
    """A client of one Label Studio server, as one user (the token's).

    Args:
        url: the server's root, e.g. ``http://localhost:8080`` (a trailing slash is ignored; a path is the prefix
            Label Studio is served under).
        api_key: a personal access token (a JWT: refreshed for access tokens) or a legacy token (sent as is); see the
            module's docstring. Surrounding whitespace is ignored.
        timeout: seconds to wait for the server to connect and for each read (> 0).

    Nothing is sent before the first call; :meth:`check` sends one request to find out whether the server is there
    and takes the token. :meth:`close` (or ``with``) closes the connections.
    """

    def __init__(self, url: str, api_key: str, timeout: float = 30.0) -> None:
        if not isinstance(url, str) or not url.strip():
            raise ValueError(f"LabelStudio: 'url' must be the server's URL, such as http://localhost:8080, got "
                             f"{url!r}")
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"LabelStudio: 'url' must be an http(s) URL such as http://localhost:8080, got {url!r}")
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError(f"LabelStudio: 'api_key' is empty; {_TOKEN_HELP}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
            raise ValueError(f"LabelStudio: 'timeout' must be a number of seconds > 0, got {timeout!r}")
        self.url = url.strip().rstrip("/")
        self.timeout = float(timeout)
        self._prefix = urlsplit(self.url).path
        self._api_key = api_key.strip()
        self._personal = _JWT.fullmatch(self._api_key) is not None
        self._access: str | None = None
        self._access_expiry = 0.0
        self._session = requests.Session()

    def __repr__(self) -> str:
        return f"LabelStudio({self.url!r})"

    def __enter__(self) -> LabelStudio:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client's connections (it may be used again: they reopen)."""
        self._session.close()

    @property
    def token_kind(self) -> str:
        """'personal access token' for a JWT, else 'legacy token': how the key is sent."""
        return "personal access token" if self._personal else "legacy token"

    # ---- the API ---------------------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise :class:`LabelStudioError` unless the server answers and takes the token (``GET
        /api/current-user/whoami``): it names the URL when the server is not reachable, says the token was refused
        (and how to get a valid one), or quotes an unexpected answer (a URL that is not Label Studio's root)."""
        user = self._json("GET", "/api/current-user/whoami",
                          not_found="has no /api/current-user/whoami: is it a Label Studio server, and the URL its "
                                    "root?")
        if not isinstance(user, Mapping) or "id" not in user:
            raise LabelStudioError(f"Label Studio at {self.url}: GET /api/current-user/whoami did not answer a user: "
                                   f"{self._excerpt(json.dumps(user))!r}")

    def ensure_project(self, title: str, class_names: Sequence[str]) -> int:
        """The id of the project titled exactly ``title``, created with :func:`labeling_config` if there is none.

        An existing project is reused when its labeling config has alcv's image and box tool with the labels of
        ``class_names`` (as a set: their order does not matter to Label Studio); otherwise, or when several
        projects have this title, :class:`LabelStudioError` names the project(s) and both label sets.
        """
        if not isinstance(title, str) or not title.strip():
            raise ValueError(f"LabelStudio.ensure_project: 'title' must be a non-empty string, got {title!r}")
        names = _check_class_names(class_names)
        projects = [project for project in self._pages("/api/projects", {"title": title})
                    if isinstance(project, Mapping) and project.get("title") == title]
        if len(projects) > 1:
            ids = sorted(int(project["id"]) for project in projects)
            raise LabelStudioError(f"Label Studio at {self.url}: {len(projects)} projects are titled {title!r} (ids "
                                   f"{ids}); rename or delete all but one, or choose another title")
        if projects:
            project_id = _int_field(projects[0], "id", f"Label Studio at {self.url}: project {title!r}")
            labels = self._project_labels(self._project(project_id))
            if set(labels) != set(names):
                raise LabelStudioError(f"Label Studio at {self.url}: project {title!r} (id {project_id}) labels "
                                       f"{sorted(labels)}, not the classes {sorted(names)}; choose another title or "
                                       f"change the project's labeling config")
            return project_id
        created = self._json("POST", "/api/projects", expected=(201,),
                             json={"title": title, "label_config": labeling_config(names)})
        return _int_field(created, "id", f"Label Studio at {self.url}: the project created as {title!r}")

    def upload_tasks(self, project_id: int, tasks: Sequence[ImageTask]) -> list[int]:
        """Create one task per :class:`ImageTask` in project ``project_id``; returns the task ids in the order of
        ``tasks``.

        Everything is checked before anything is sent (``ValueError`` naming the frame: a frame twice, an unreadable
        image, a size that is not the file's, a suffix Label Studio does not import; ``FileNotFoundError``: a missing
        image; ``LabelStudioError``: a label that is not one of the project's, a project that does not exist).
        Then the images are uploaded (``POST /api/projects/<id>/import`` with ``commit_to_project=false``: stored
        files, no tasks), and the tasks imported as JSON referencing the stored files, with the predictions inline;
        the created tasks are matched to ``tasks`` by their ``data.frame``. Uploaded files that no task uses are
        invisible in Label Studio; when an import fails after some tasks were created, the error lists their ids.
        """
        project_id = _check_id(project_id, "project_id")
        tasks = list(tasks)
        for task in tasks:
            if not isinstance(task, ImageTask):
                raise TypeError(f"LabelStudio.upload_tasks: tasks must be ImageTask, got {type(task).__name__}")
        frames = [task.frame for task in tasks]
        repeated = sorted(frame for frame, count in Counter(frames).items() if count > 1)
        if repeated:
            raise ValueError(f"LabelStudio.upload_tasks: frames {repeated} are given more than once")
        for task in tasks:
            _check_image_file(task)
        if not tasks:
            return []
        project = self._project(project_id)
        labels = set(self._project_labels(project))
        for task in tasks:
            unknown = sorted(set(task.labels) - labels)
            if unknown:
                raise LabelStudioError(f"Label Studio at {self.url}: frame {task.frame!r}: labels {unknown} are not "
                                       f"labels of project {project.get('title')!r} (id {project_id}), which has "
                                       f"{sorted(labels)}")
        urls = self._upload_images(project_id, tasks)
        payload = [_task_json(task, url) for task, url in zip(tasks, urls, strict=True)]
        created: list[int] = []
        for start in range(0, len(payload), _IMPORT_TASKS):
            batch = payload[start:start + _IMPORT_TASKS]
            try:
                answer = self._json("POST", f"/api/projects/{project_id}/import", expected=(201,),
                                    params={"return_task_ids": "true"}, json=batch)
                ids = answer.get("task_ids") if isinstance(answer, Mapping) else None
                if (not isinstance(ids, list) or len(ids) != len(batch)
                        or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
                    raise LabelStudioError(f"Label Studio at {self.url}: POST /api/projects/{project_id}/import did "
                                           f"not answer the ids of the {len(batch)} tasks it created: "
                                           f"{self._excerpt(json.dumps(answer))!r}")
            except LabelStudioError as error:
                if not created:
                    raise
                raise LabelStudioError(f"{error} ({len(created)} of the {len(payload)} tasks had been created: ids "
                                       f"{created})") from error
            created.extend(ids)
        exported = self._export_tasks(project_id, created)
        by_frame: dict[str, int] = {}
        uploaded = set(frames)
        for task_id in created:
            data = exported.get(task_id, {}).get("data")
            frame = data.get("frame") if isinstance(data, Mapping) else None
            if frame not in uploaded or frame in by_frame:
                raise LabelStudioError(f"Label Studio at {self.url}: task {task_id}, created in project {project_id}, "
                                       f"has frame {frame!r}: not one frame of the upload each (ids {created})")
            by_frame[frame] = task_id
        self._ensure_predictions(project_id, [(by_frame[task["data"]["frame"]], task["predictions"][0])
                                              for task in payload])
        return [by_frame[frame] for frame in frames]

    def _ensure_predictions(self, project_id: int, predictions: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        """Create, through ``POST /api/predictions``, each ``(task id, prediction)`` whose task has no prediction in
        Label Studio's predictions list: under load the server was seen to create the imported tasks without the
        predictions given inline with them."""
        listed = self._json("GET", "/api/predictions", params={"project": project_id})
        if not isinstance(listed, list):
            raise LabelStudioError(f"Label Studio at {self.url}: GET /api/predictions did not answer a list: "
                                   f"{self._excerpt(json.dumps(listed))!r}")
        predicted = {prediction.get("task") for prediction in listed if isinstance(prediction, Mapping)}
        for task_id, prediction in predictions:
            if task_id not in predicted:
                self._json("POST", "/api/predictions", expected=(201,), json={"task": task_id, **prediction})

    def submitted_boxes(self, project_id: int, task_ids: Sequence[int], class_names: Sequence[str]
                        ) -> dict[int, FrameBoxes | None]:
        """Each task's latest submitted annotation as pixel boxes, keyed by task id in the order of ``task_ids``;
        None for a task without one (not annotated, or every annotation skipped: ``was_cancelled``).

        Latest: the annotation updated last (the higher id on a tie); drafts are not submitted. A region becomes
        ``x1 = x / 100 * original_width``, ``y1 = y / 100 * original_height``, ``x2 = x1 + width / 100 *
        original_width``, ``y2 = y1 + height / 100 * original_height``; a rotation by a multiple of 90 degrees
        (within :data:`ROTATION_TOLERANCE`, turning around the top-left corner as Label Studio does) gives the
        rotated rectangle's box. A box may reach :data:`EDGE_TOLERANCE` pixels past the image and is clipped to it.

        Raises :class:`AnnotationError` naming the task, the frame, the annotation and the region for: a label not in
        ``class_names``, a region with no or several labels, a result type other than ``rectanglelabels``, a box
        rotated by another angle, a box past an image edge by more than the tolerance (naming the edge), a box of
        zero width or height, a region without its image size. :class:`LabelStudioError`: the project does not
        exist, a task id is not one of its tasks, a task has no ``data.frame``.
        """
        project_id = _check_id(project_id, "project_id")
        ids = [_check_id(task_id, "task id") for task_id in task_ids]
        repeated = sorted(task_id for task_id, count in Counter(ids).items() if count > 1)
        if repeated:
            raise ValueError(f"LabelStudio.submitted_boxes: task ids {repeated} are given more than once")
        names = _check_class_names(class_names)
        self._project(project_id)
        exported = self._export_tasks(project_id, ids)
        missing = [task_id for task_id in ids if task_id not in exported]
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (", ..." if len(missing) > 20 else "")
            raise LabelStudioError(f"Label Studio at {self.url}: tasks {shown} are not tasks of project "
                                   f"{project_id}")
        return {task_id: self._submitted(exported[task_id], names) for task_id in ids}

    # ---- projects, files and tasks ---------------------------------------------------------------------------

    def _project(self, project_id: int) -> Mapping[str, Any]:
        project = self._json("GET", f"/api/projects/{project_id}", not_found=f"has no project {project_id}")
        if not isinstance(project, Mapping):
            raise LabelStudioError(f"Label Studio at {self.url}: GET /api/projects/{project_id} did not answer a "
                                   f"project: {self._excerpt(json.dumps(project))!r}")
        return project

    def _project_labels(self, project: Mapping[str, Any]) -> list[str]:
        """The labels of the project's box tool; raises naming the project if its config is not alcv's."""
        where = f"Label Studio at {self.url}: project {project.get('title')!r} (id {project.get('id')})"
        config = project.get("label_config")
        try:
            root = ElementTree.fromstring(config) if isinstance(config, str) else None
        except ElementTree.ParseError as error:
            raise LabelStudioError(f"{where}: its labeling config is not XML ({error})") from None
        images = [] if root is None else [element for element in root.iter("Image")
                                          if element.get("name") == IMAGE_NAME]
        controls = [] if root is None else [element for element in root.iter("RectangleLabels")
                                            if element.get("name") == LABEL_NAME
                                            and element.get("toName") == IMAGE_NAME]
        if len(images) != 1 or images[0].get("value") != f"${IMAGE_NAME}" or len(controls) != 1:
            raise LabelStudioError(f'{where}: its labeling config is not alcv\'s (an <Image name="{IMAGE_NAME}" '
                                   f'value="${IMAGE_NAME}"/> and a <RectangleLabels name="{LABEL_NAME}" '
                                   f'toName="{IMAGE_NAME}">): {self._excerpt(str(config))!r}')
        return [str(label.get("value")) for label in controls[0].iter("Label")]

    def _pages(self, endpoint: str, params: Mapping[str, Any]) -> Iterator[Any]:
        """The results of a paginated list endpoint, page after page."""
        page = 1
        while True:
            answer = self._json("GET", endpoint, params={**params, "page": page, "page_size": 100})
            if isinstance(answer, list):  # a server that does not paginate
                yield from answer
                return
            results = answer.get("results") if isinstance(answer, Mapping) else None
            if not isinstance(results, list):
                raise LabelStudioError(f"Label Studio at {self.url}: GET {endpoint} did not answer a list: "
                                       f"{self._excerpt(json.dumps(answer))!r}")
            yield from results
            if not answer.get("next") or not results:
                return
            page += 1

    def _upload_images(self, project_id: int, tasks: Sequence[ImageTask]) -> list[str]:
        """Upload the tasks' images (no tasks made); returns the URL of each stored file, in order."""
        endpoint = f"/api/projects/{project_id}/import"
        urls: list[str] = []
        for batch in _upload_batches(tasks):
            sent = [_upload_name(task.image) for task in batch]
            with ExitStack() as stack:
                files = {f"file{index}": (name, stack.enter_context(task.image.open("rb")),
                                          mimetypes.guess_type(name)[0] or "application/octet-stream")
                         for index, (task, name) in enumerate(zip(batch, sent, strict=True))}
                answer = self._json("POST", endpoint, expected=(201,), params={"commit_to_project": "false"},
                                    files=files)
            ids = answer.get("file_upload_ids") if isinstance(answer, Mapping) else None
            if not isinstance(ids, list) or len(ids) != len(batch):
                raise LabelStudioError(f"Label Studio at {self.url}: POST {endpoint} did not answer the ids of the "
                                       f"{len(batch)} files uploaded: {self._excerpt(json.dumps(answer))!r}")
            uploads = self._json("GET", f"/api/projects/{project_id}/file-uploads", params={"ids": json.dumps(ids)})
            stored = {upload.get("id"): upload.get("file") for upload in uploads if isinstance(upload, Mapping)} \
                if isinstance(uploads, list) else {}
            for task, name, upload_id in zip(batch, sent, ids, strict=True):
                path = stored.get(upload_id)
                if not isinstance(path, str) or not path.endswith(name):
                    raise LabelStudioError(f"Label Studio at {self.url}: the upload of frame {task.frame!r} "
                                           f"({task.image}) is file upload {upload_id}, which Label Studio lists as "
                                           f"{path!r}, not a copy of {name!r}")
                # what Label Studio itself puts in a task made from an uploaded file (FileUpload.url): its media URL
                urls.append(f"{self._prefix}/data/{path.lstrip('/')}")
        return urls

    def _export_tasks(self, project_id: int, task_ids: Sequence[int]) -> dict[int, Mapping[str, Any]]:
        """The project's tasks of ``task_ids`` (with data, annotations and predictions), by id; ids that are not the
        project's tasks are absent. One export request per :data:`_EXPORT_IDS` ids."""
        tasks: dict[int, Mapping[str, Any]] = {}
        endpoint = f"/api/projects/{project_id}/export"
        for start in range(0, len(task_ids), _EXPORT_IDS):
            batch = list(task_ids[start:start + _EXPORT_IDS])
            answer = self._json("GET", endpoint, not_found=f"has no project {project_id}",
                                params={"exportType": "JSON", "download_all_tasks": "true",
                                        "download_resources": "false", "ids[]": batch})
            if not isinstance(answer, list):
                raise LabelStudioError(f"Label Studio at {self.url}: GET {endpoint} did not answer a list of tasks: "
                                       f"{self._excerpt(json.dumps(answer))!r}")
            for task in answer:
                if isinstance(task, Mapping) and task.get("id") in batch:
                    tasks[int(task["id"])] = task
        return tasks

    def _submitted(self, task: Mapping[str, Any], names: Sequence[str]) -> FrameBoxes | None:
        task_id = int(task["id"])
        data = task.get("data")
        frame = data.get("frame") if isinstance(data, Mapping) else None
        if not isinstance(frame, str):
            raise LabelStudioError(f"Label Studio at {self.url}: task {task_id} has no 'frame' in its data: not a "
                                   f"task alcv uploaded")
        annotations = [annotation for annotation in task.get("annotations") or []
                       if isinstance(annotation, Mapping) and not annotation.get("was_cancelled")]
        if not annotations:
            return None
        latest = max(annotations, key=_annotation_order)
        results = latest.get("result") or []
        if not isinstance(results, list):
            raise AnnotationError(f"Label Studio task {task_id} (frame {frame!r}), annotation {latest.get('id')}: its "
                                  f"result is not a list", task_id, frame)
        boxes: list[list[float]] = []
        labels: list[str] = []
        for region in results:
            region_id = region.get("id") if isinstance(region, Mapping) else None
            where = (f"Label Studio task {task_id} (frame {frame!r}), annotation {latest.get('id')}, region "
                     f"{region_id!r}")
            box, label = _region_box(region, names, where, task_id, frame)
            boxes.append(box)
            labels.append(label)
        return FrameBoxes(frame=frame, boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4), labels=labels)

    # ---- HTTP ------------------------------------------------------------------------------------------------

    def _json(self, method: str, endpoint: str, *, expected: tuple[int, ...] = (200,), not_found: str | None = None,
              **kwargs: Any) -> Any:
        """The decoded JSON body of a request that must be answered with one of ``expected``."""
        response = self._request(method, endpoint, expected=expected, not_found=not_found, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise self._unexpected(response, method, endpoint, "the body is not JSON") from None

    def _request(self, method: str, endpoint: str, *, expected: tuple[int, ...], not_found: str | None = None,
                 **kwargs: Any) -> requests.Response:
        response = self._send(method, endpoint, headers=self._auth_headers(), **kwargs)
        if response.status_code == 401 and self._personal:
            # the access token may have expired early (clock skew): refresh it and try once more
            self._refresh()
            for file in (kwargs.get("files") or {}).values():
                file[1].seek(0)
            response = self._send(method, endpoint, headers=self._auth_headers(), **kwargs)
        if response.status_code in (401, 403):
            raise self._refused(response, method, endpoint)
        if response.status_code == 404 and not_found is not None:
            raise LabelStudioError(f"Label Studio at {self.url} {not_found} (404 on {method} {endpoint})")
        if response.status_code not in expected:
            raise self._unexpected(response, method, endpoint)
        return response

    def _send(self, method: str, endpoint: str, **kwargs: Any) -> requests.Response:
        try:
            return self._session.request(method, self.url + endpoint, timeout=self.timeout, allow_redirects=False,
                                         **kwargs)
        except requests.Timeout:
            raise LabelStudioError(f"Label Studio at {self.url} did not answer {method} {endpoint} within "
                                   f"{self.timeout:g} s") from None
        except requests.ConnectionError as error:
            raise LabelStudioError(f"Label Studio at {self.url} is not reachable ({method} {endpoint}: "
                                   f"{self._scrub(_reason(error))}); is the server running, and is this its URL?"
                                   ) from None
        except requests.RequestException as error:
            raise LabelStudioError(f"Label Studio at {self.url}: {method} {endpoint} failed: "
                                   f"{self._scrub(str(error))}") from None

    def _auth_headers(self) -> dict[str, str]:
        if not self._personal:
            return {"Authorization": f"Token {self._api_key}"}
        if self._access is None or time.time() > self._access_expiry - _REFRESH_MARGIN:
            self._refresh()
        return {"Authorization": f"Bearer {self._access}"}

    def _refresh(self) -> None:
        """Trade the personal access token for an access token."""
        response = self._send("POST", _REFRESH_ENDPOINT, json={"refresh": self._api_key})
        if response.status_code in (400, 401, 403):
            raise self._refused(response, "POST", _REFRESH_ENDPOINT)
        if response.status_code == 404:
            raise LabelStudioError(f"Label Studio at {self.url} has no {_REFRESH_ENDPOINT} (404): a Label Studio "
                                   f"without personal access tokens; use its legacy Access Token (Account & "
                                   f"Settings)")
        if response.status_code != 200:
            raise self._unexpected(response, "POST", _REFRESH_ENDPOINT)
        try:
            access = response.json()["access"]
        except (ValueError, KeyError, TypeError):
            access = None
        if not isinstance(access, str) or not access:
            raise self._unexpected(response, "POST", _REFRESH_ENDPOINT, "no access token in the answer")
        self._access = access
        self._access_expiry = _jwt_expiry(access)

    def _refused(self, response: requests.Response, method: str, endpoint: str) -> LabelStudioError:
        detail = self._detail(response)
        if response.status_code == 403 and endpoint != _REFRESH_ENDPOINT:
            return LabelStudioError(f"Label Studio at {self.url} refused the {self.token_kind} for {method} {endpoint} "
                                    f"(403: {detail}): its user may not do this, or the token is not valid here; "
                                    f"{_TOKEN_HELP}")
        return LabelStudioError(f"Label Studio at {self.url} refused the {self.token_kind} ({response.status_code} on "
                                f"{method} {endpoint}: {detail}); {_TOKEN_HELP}")

    def _unexpected(self, response: requests.Response, method: str, endpoint: str, why: str = ""
                    ) -> LabelStudioError:
        status = f"{response.status_code} {response.reason or ''}".strip()
        location = response.headers.get("Location")
        extra = (f", redirecting to {self._scrub(location)}" if location else "") + (f", {why}" if why else "")
        return LabelStudioError(f"Label Studio at {self.url}: unexpected response to {method} {endpoint}: {status}"
                                f"{extra}: {self._excerpt(response.text)!r}")

    def _detail(self, response: requests.Response) -> str:
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            detail = None
        return self._excerpt(detail if isinstance(detail, str) and detail else response.text or response.reason)

    def _excerpt(self, text: str | None) -> str:
        return self._scrub(text or "")[:_BODY_EXCERPT]

    def _scrub(self, text: str) -> str:
        """``text`` without the token or the access token in it."""
        for secret in (self._api_key, self._access):
            if secret:
                text = text.replace(secret, "<token>")
        return text


# ---- helpers -------------------------------------------------------------------------------------------------


def _check_class_names(class_names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(class_names, str) or not isinstance(class_names, Sequence) or not class_names:
        raise ValueError(f"Label Studio: 'class_names' must be a non-empty list of class names, got {class_names!r}")
    names = tuple(class_names)
    for name in names:
        if (not isinstance(name, str) or not name or name != name.strip()
                or any(ord(character) < 32 for character in name)):
            raise ValueError(f"Label Studio: class name {name!r} must be a non-empty string without surrounding "
                             f"whitespace or control characters")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"Label Studio: class names {repeated} are given more than once")
    return names


def _check_id(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"Label Studio: {what} must be a positive int, got {value!r}")
    return int(value)


def _int_field(answer: Any, field: str, where: str) -> int:
    value = answer.get(field) if isinstance(answer, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int):
        raise LabelStudioError(f"{where}: the answer has no integer {field!r}: {str(answer)[:_BODY_EXCERPT]!r}")
    return value


def _check_image_file(task: ImageTask) -> None:
    where = f"LabelStudio.upload_tasks: frame {task.frame!r}: image {task.image}"
    if task.image.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"{where}: Label Studio imports images with suffixes {list(IMAGE_SUFFIXES)}, not "
                         f"{task.image.suffix!r}")
    if not task.image.is_file():
        raise FileNotFoundError(f"{where}: file not found")
    try:
        with PILImage.open(task.image) as opened:  # reads the header only
            size = opened.size
    except (OSError, ValueError, PILImage.DecompressionBombError) as error:
        raise ValueError(f"{where}: cannot read the image ({error})") from error
    if size != (task.width, task.height):
        raise ValueError(f"{where}: the file is {size[0]} x {size[1]} pixels, the task says {task.width} x "
                         f"{task.height}")


def _upload_batches(tasks: Sequence[ImageTask]) -> Iterator[list[ImageTask]]:
    batch: list[ImageTask] = []
    size = 0
    for task in tasks:
        file_size = task.image.stat().st_size
        if batch and (len(batch) == _UPLOAD_FILES or size + file_size > _UPLOAD_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(task)
        size += file_size
    if batch:
        yield batch


def _upload_name(image: Path) -> str:
    """The file name an image is uploaded as: its own, in characters that Label Studio (Django) keeps as they are,
    short enough for Label Studio's 100-character file field."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", image.stem).strip("._")[:50] or "image"
    return f"{stem}{image.suffix.lower()}"


def _task_json(task: ImageTask, url: str) -> dict[str, Any]:
    """The JSON import of one task: its data and its prediction (percent coordinates, boxes clipped)."""
    width, height = task.width, task.height
    clipped = np.clip(task.boxes, 0.0, [width, height, width, height])
    result = []
    for index, ((x1, y1, x2, y2), label, score) in enumerate(zip(clipped.tolist(), task.labels,
                                                                 task.scores.tolist(), strict=True)):
        if x2 <= x1 or y2 <= y1:
            continue
        result.append({
            "id": f"box{index}", "from_name": LABEL_NAME, "to_name": IMAGE_NAME, "type": RESULT_TYPE,
            "original_width": width, "original_height": height, "image_rotation": 0, "score": score,
            "value": {"x": x1 / width * 100.0, "y": y1 / height * 100.0, "width": (x2 - x1) / width * 100.0,
                      "height": (y2 - y1) / height * 100.0, "rotation": 0, "rectanglelabels": [label]},
        })
    prediction: dict[str, Any] = {"model_version": task.model_version, "result": result}
    if len(task.scores):
        prediction["score"] = float(np.mean(task.scores))
    return {"data": {IMAGE_NAME: url, "frame": task.frame}, "predictions": [prediction]}


def _region_box(region: Any, names: Sequence[str], where: str, task_id: int, frame: str) -> tuple[list[float], str]:
    """A result region as an XYXY pixel box within the image and its label (see ``submitted_boxes``)."""

    def fail(problem: str) -> AnnotationError:
        return AnnotationError(f"{where}: {problem}", task_id, frame)

    if not isinstance(region, Mapping):
        raise fail(f"the region is not an object: {str(region)[:_BODY_EXCERPT]!r}")
    kind = region.get("type")
    if kind != RESULT_TYPE:
        raise fail(f"a {kind!r} result, not a {RESULT_TYPE!r} box: alcv reads the boxes of the RectangleLabels tool "
                   f"only")
    value = region.get("value")
    labels = value.get(RESULT_TYPE) if isinstance(value, Mapping) else None
    if not isinstance(labels, list) or len(labels) != 1:
        count = len(labels) if isinstance(labels, list) else 0
        raise fail(f"the box has {count} labels {labels!r}: a box takes exactly one")
    label = labels[0]
    if label not in names:
        raise fail(f"label {label!r} is not one of the classes {list(names)}")
    numbers = {}
    for key, source in (("x", value), ("y", value), ("width", value), ("height", value),
                        ("original_width", region), ("original_height", region)):
        number = source.get(key)
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            raise fail(f"{key!r} is {number!r}, not a finite number")
        numbers[key] = float(number)
    image_width, image_height = numbers["original_width"], numbers["original_height"]
    if image_width <= 0 or image_height <= 0:
        raise fail(f"the image size is {image_width:g} x {image_height:g}")
    image_rotation = region.get("image_rotation") or 0
    if image_rotation != 0:
        raise fail(f"the image was rotated by {image_rotation} degrees in the editor: alcv reads boxes on the image "
                   f"as stored")
    rotation = value.get("rotation") or 0.0
    if isinstance(rotation, bool) or not isinstance(rotation, int | float) or not math.isfinite(rotation):
        raise fail(f"rotation {rotation!r} is not a finite number")
    turn = float(rotation) % 360.0
    quarter = round(turn / 90.0)
    if abs(turn - 90.0 * quarter) > ROTATION_TOLERANCE:
        raise fail(f"the box is rotated by {rotation:g} degrees: not an axis-aligned box (unrotate it in Label "
                   f"Studio)")
    cos, sin = ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))[quarter % 4]
    left, top = numbers["x"] / 100.0 * image_width, numbers["y"] / 100.0 * image_height
    span_x, span_y = numbers["width"] / 100.0 * image_width, numbers["height"] / 100.0 * image_height
    for size, name in ((span_x, "width"), (span_y, "height")):
        if size <= 0:
            raise fail(f"the box has {'zero' if size == 0 else 'a negative'} {name} ({size:g} px)")
    # the corners of the rectangle turned clockwise (image y points down) around its top-left corner
    xs = [left, left + span_x * cos, left - span_y * sin, left + span_x * cos - span_y * sin]
    ys = [top, top + span_x * sin, top + span_y * cos, top + span_x * sin + span_y * cos]
    x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
    for outside, edge, position in ((x1 < -EDGE_TOLERANCE, "left", f"x1 = {x1:g}"),
                                    (y1 < -EDGE_TOLERANCE, "top", f"y1 = {y1:g}"),
                                    (x2 > image_width + EDGE_TOLERANCE, "right", f"x2 = {x2:g}"),
                                    (y2 > image_height + EDGE_TOLERANCE, "bottom", f"y2 = {y2:g}")):
        if outside:
            raise fail(f"the box's {edge} edge ({position} px) lies outside the {image_width:g} x {image_height:g} "
                       f"image by more than {EDGE_TOLERANCE:g} px")
    x1, x2 = min(max(x1, 0.0), image_width), min(max(x2, 0.0), image_width)
    y1, y2 = min(max(y1, 0.0), image_height), min(max(y2, 0.0), image_height)
    if x2 <= x1 or y2 <= y1:
        raise fail(f"the box has zero {'width' if x2 <= x1 else 'height'} within the image")
    return [x1, y1, x2, y2], str(label)


def _annotation_order(annotation: Mapping[str, Any]) -> tuple[float, int]:
    """Sort key of annotations: when last updated (else created), then id."""
    stamp = annotation.get("updated_at") or annotation.get("created_at")
    try:
        seconds = datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        seconds = -math.inf
    identifier = annotation.get("id")
    return seconds, identifier if isinstance(identifier, int) else -1


def _jwt_expiry(token: str) -> float:
    """The ``exp`` of a JWT (not verified: only to refresh in time); 0 if it has none (refresh every time)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        expiry = claims.get("exp")
    except (IndexError, ValueError, binascii.Error, AttributeError):
        return 0.0
    return float(expiry) if isinstance(expiry, int | float) and not isinstance(expiry, bool) else 0.0


def _reason(error: requests.ConnectionError) -> str:
    """The innermost reason of a connection error (e.g. 'Connection refused'), not urllib3's whole chain."""
    text = str(error)
    match = re.search(r"\[Errno -?\d+\] ([^')\"]+)", text)
    if match:
        return match.group(1).strip()
    return text[:_BODY_EXCERPT]
