"""A real Label Studio server for the tests of :mod:`alcv.labeling.label_studio`.

Label Studio lives in a virtual environment of its own, ``.venv/label-studio`` (its pins would move alcv's numpy
and OpenCV: it is not installed into alcv's environment); ``ALCV_LABEL_STUDIO`` may name another ``label-studio``
executable. :func:`install_command` is how to install it.

One server serves a whole test session: :class:`Server` starts ``label-studio start`` on 127.0.0.1 at a free port,
everything it writes (database, media, its ``HOME``) in one folder, with a known user; :meth:`Server.wait_ready`
waits for ``/health``; :meth:`Server.personal_access_token` logs in with the user's password and creates the
user's personal access token, as a user does in the browser (Account & Settings), once per server even when
several pytest-xdist workers ask; :meth:`Server.stop` ends the server's process group.

Under pytest-xdist the controller starts the server in the background at the start of the session (see
``tests/conftest.py``), so that its first start (Label Studio's database migrations, minutes on a loaded CPU)
overlaps the other tests; it passes the server's folder to the workers in :data:`SERVER_ENV`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

#: the label-studio executable to run, when not the one in .venv/label-studio
LABEL_STUDIO_ENV = "ALCV_LABEL_STUDIO"
#: the folder of a server already started for this session (by the xdist controller), for the workers
SERVER_ENV = "ALCV_TEST_LABEL_STUDIO_ROOT"
#: the Label Studio release the tests are written against (what the README's test command installs)
VERSION = "1.23.2"
#: the server's user: a login and password, and a legacy token (which Label Studio 1.23 refuses by default)
USERNAME = "alcv-tests@example.com"
PASSWORD = "alcv-tests-password"
LEGACY_TOKEN = "0123456789abcdef0123456789abcdef01234567"

REPOSITORY = Path(__file__).resolve().parents[1]
#: where the README's test command installs Label Studio
DEFAULT_VENV = REPOSITORY / ".venv" / "label-studio"

#: environment variables Label Studio reads (its get_env tries LABEL_STUDIO_<name>, HEARTEX_<name>, <name>) that
#: must not leak into the test server from the caller's environment
_LEAKING = ("USERNAME", "PASSWORD", "USER_TOKEN", "PORT", "HOST", "DATABASE_NAME", "DATABASE_URL", "DJANGO_DB",
            "POSTGRE_HOST", "REDIS_LOCATION")
_STARTED = re.compile(r"Starting development server at (http://[^/\s]+)/")


def install_command() -> str:
    """The shell command that installs Label Studio where the tests look for it (the README's test command does)."""
    venv = DEFAULT_VENV.relative_to(REPOSITORY)
    return (f"uv venv -q --allow-existing {venv} && uv pip install -q --python {venv} label-studio=={VERSION}  (or, "
            f"slower: python3 -m venv {venv} && {venv}/bin/pip install label-studio=={VERSION})")


def label_studio_executable() -> Path | None:
    """``$ALCV_LABEL_STUDIO`` if set, else ``.venv/label-studio/bin/label-studio``; None if that is not a file."""
    executable = Path(os.environ.get(LABEL_STUDIO_ENV) or DEFAULT_VENV / "bin" / "label-studio")
    return executable if executable.is_file() else None


def not_installed() -> str:
    """Why :func:`label_studio_executable` found none, and how to install Label Studio."""
    named = os.environ.get(LABEL_STUDIO_ENV)
    where = f"{LABEL_STUDIO_ENV}={named} is not a file" if named else f"no {DEFAULT_VENV}/bin/label-studio"
    return (f"Label Studio is not installed ({where}); these tests need a real server. Install it with: "
            f"{install_command()}, or name a label-studio executable in {LABEL_STUDIO_ENV}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """A ``label-studio start`` process whose files all lie in ``root`` (``data/``, ``home/``, ``server.log``).

    ``root/server.json`` records the process id and the port, so that another process (an xdist worker) can use
    a server this one started: ``Server.attach(root)``.
    """

    def __init__(self, root: Path, executable: Path, port: int, pid: int | None = None) -> None:
        self.root = Path(root)
        self.executable = Path(executable)
        self.port = port
        self.pid = pid
        self.log = self.root / "server.log"
        self.url = f"http://127.0.0.1:{port}"
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, root: Path, executable: Path) -> Server:
        """Start a server (it migrates a fresh database first: wait with :meth:`wait_ready`)."""
        if not executable.is_file():
            raise FileNotFoundError(f"{executable}: no label-studio executable there")
        server = cls(root, executable, free_port())
        (server.root / "data").mkdir(parents=True, exist_ok=True)
        (server.root / "home").mkdir(exist_ok=True)
        environment = {name: value for name, value in os.environ.items()
                       if not name.startswith(("LABEL_STUDIO_", "HEARTEX_")) and name not in _LEAKING}
        home = server.root / "home"
        environment.update({
            "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "LABEL_STUDIO_BASE_DATA_DIR": str(server.root / "data"),
            # no calls out: no version check against PyPI, no analytics, no error reports to Sentry (its DSN is
            # built in; an empty one turns it off)
            "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
        })
        command = [str(executable), "start", "--no-browser", "--internal-host", "127.0.0.1",
                   "--port", str(server.port), "--data-dir", str(server.root / "data"),
                   "--username", USERNAME, "--password", PASSWORD, "--user-token", LEGACY_TOKEN]
        with server.log.open("wb") as log:
            server._process = subprocess.Popen(command, cwd=server.root, env=environment, stdin=subprocess.DEVNULL,
                                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        server.pid = server._process.pid
        (server.root / "server.json").write_text(json.dumps({"pid": server.pid, "port": server.port,
                                                             "executable": str(executable)}))
        return server

    @classmethod
    def attach(cls, root: Path) -> Server:
        """The server another process started in ``root``."""
        record = json.loads((Path(root) / "server.json").read_text())
        return cls(Path(root), Path(record["executable"]), int(record["port"]), int(record["pid"]))

    def running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return self.pid is not None and Path(f"/proc/{self.pid}").exists() and not _zombie(self.pid)

    def log_tail(self, characters: int = 4000) -> str:
        if not self.log.exists():
            return "(no log)"
        with self.log.open("rb") as log:
            log.seek(max(0, self.log.stat().st_size - characters))
            return log.read().decode(errors="replace")

    def _started_url(self) -> str | None:
        """The URL the server said it listens on (near the log's start, after the migrations), if it did yet."""
        if not self.log.exists():
            return None
        with self.log.open("rb") as log:
            started = _STARTED.search(log.read(1 << 20).decode(errors="replace"))
        return started.group(1) if started else None

    def wait_ready(self, timeout: float = 600.0) -> None:
        """Wait until the server answers ``/health``; raise ``RuntimeError`` with its log's tail if it exits or
        does not answer within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                raise RuntimeError(f"the Label Studio server (pid {self.pid}) exited before it answered; its log "
                                   f"({self.log}) ends:\n{self.log_tail()}")
            started = self._started_url()
            if started:
                self.url = started  # Label Studio moves to the next port when its port is taken
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"{self.url}/health", timeout=5).ok:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Label Studio server (pid {self.pid}) did not answer {self.url}/health within "
                                   f"{timeout:g} s; its log ({self.log}) ends:\n{self.log_tail()}")
            time.sleep(0.5)

    def personal_access_token(self) -> str:
        """The user's personal access token, created once per server (a file lock serializes xdist workers): log
        in with the password as the browser does, then ``POST /api/token/`` (Account & Settings > Personal Access
        Token > Create)."""
        with (self.root / "token.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            stored = self.root / "token.txt"
            if stored.exists():
                return stored.read_text()
            with requests.Session() as browser:
                browser.get(f"{self.url}/user/login/", timeout=30).raise_for_status()
                answer = browser.post(f"{self.url}/user/login/", timeout=30, allow_redirects=False,
                                      data={"email": USERNAME, "password": PASSWORD,
                                            "csrfmiddlewaretoken": browser.cookies["csrftoken"]},
                                      headers={"Referer": f"{self.url}/user/login/"})
                if answer.status_code != 302:
                    raise RuntimeError(f"logging in to Label Studio failed: {answer.status_code} {answer.text[:300]}")
                answer = browser.post(f"{self.url}/api/token/", timeout=30,
                                      headers={"X-CSRFToken": browser.cookies["csrftoken"], "Referer": self.url})
                if answer.status_code != 201:
                    raise RuntimeError(f"creating a personal access token failed: {answer.status_code} "
                                       f"{answer.text[:300]}")
                token = answer.json()["token"]
            stored.write_text(token)
            return token

    def stop(self, grace: float = 20.0) -> list[int]:
        """End the server's process group (SIGTERM, then SIGKILL after ``grace`` seconds); returns the ids of its
        processes still alive after that (none, normally)."""
        if self.pid is None:
            return []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self._group():
            self._reap()
            time.sleep(0.2)
        if self._group():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and self._group():
                self._reap()
                time.sleep(0.2)
        self._reap()
        return self._group()

    def _reap(self) -> None:
        if self._process is not None:
            self._process.poll()

    def _group(self) -> list[int]:
        """The live (not zombie) processes of the server's process group (its session: it was started in one)."""
        alive = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            state, group = fields[0], int(fields[2])
            if group == self.pid and state != "Z":
                alive.append(int(entry.name))
        return alive


def _zombie(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) == "Z"
    except OSError:
        return True


def main() -> None:
    """``python tests/label_studio_server.py [ROOT]``: start a server in ROOT (default: a temporary folder), report
    how long its first start takes, create the token, stop it (and remove the temporary folder); the timing check to
    run by hand (the test file's time: ``python -m pytest tests/test_label_studio.py -n 0 --durations=5``)."""
    import shutil
    import tempfile

    temporary = len(sys.argv) < 2
    root = Path(tempfile.mkdtemp(prefix="alcv-label-studio-")) if temporary else Path(sys.argv[1])
    executable = label_studio_executable()
    if executable is None:
        raise SystemExit(not_installed())
    began = time.monotonic()
    server = Server.start(root, executable)
    try:
        server.wait_ready()
        ready = time.monotonic() - began
        server.personal_access_token()
        print(f"Label Studio ({executable}) answered /health after {ready:.1f} s, token after "
              f"{time.monotonic() - began:.1f} s; files in {root}")
    finally:
        left = server.stop()
        if temporary and not left:
            shutil.rmtree(root, ignore_errors=True)
    print(f"stopped; processes left: {left or 'none'}")


if __name__ == "__main__":
    main()
