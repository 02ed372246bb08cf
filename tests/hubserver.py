"""A stand-in Hugging Face Hub on 127.0.0.1, enough for huggingface_hub's download path.

Repos live in a folder as ``root/<owner>/<repo>/<commit>/<file>`` with a branch -> commit map
per repo. Served:

- ``HEAD``/``GET /<owner>/<repo>/resolve/<rev>/<file>``: the file, with the headers
  huggingface_hub relies on: ``X-Repo-Commit``, ``ETag`` (the file's sha256, as the Hub gives
  for LFS files; it becomes the cached blob's name) and ``X-Linked-Size``. Misses answer 404
  with ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``); without
  it huggingface_hub reports them as connection problems.
- ``GET /api/models/<owner>/<repo>[/revision/<rev>]``: ``{"id", "sha", "siblings"}``.

No ``X-Xet-*`` headers are sent, so huggingface_hub uses plain HTTP. Faults can be injected per
file: ``"corrupt"`` (same size, bytes flipped) and ``"truncate"`` (half the body, full size
advertised). Every request is logged in ``requests`` so a test can prove the network was not
used. HTTP/1.0 closes each connection, so nothing outlives :meth:`StandInHub.stop`.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest


class StandInHub:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.refs: dict[str, dict[str, str]] = {}
        self.faults: dict[tuple[str, str], str] = {}
        self.requests: list[tuple[str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""

    # -- content ---------------------------------------------------------------------------
    def add_file(self, repo_id: str, filename: str, data: bytes | Path, *, commit: str | None = None,
                 branch: str | None = "main") -> str:
        """Put ``data`` at ``filename`` in a commit (a new one unless given); move ``branch`` to it."""
        commit = commit or hashlib.sha1(os.urandom(20)).hexdigest()
        dst = self.root / repo_id / commit / filename
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data.read_bytes() if isinstance(data, Path) else data)
        self.refs.setdefault(repo_id, {})
        if branch:
            self.refs[repo_id][branch] = commit
        return commit

    def commit_of(self, repo_id: str, revision: str) -> str | None:
        if repo_id not in self.refs:
            return None
        if revision in self.refs[repo_id]:
            return self.refs[repo_id][revision]
        if len(revision) == 40 and (self.root / repo_id / revision).is_dir():
            return revision
        return None

    def files(self, repo_id: str, commit: str) -> list[str]:
        base = self.root / repo_id / commit
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> StandInHub:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.endpoint = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    hub: StandInHub

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass  # keep pytest output clean

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._handle(send_body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._handle(send_body=True)

    # -- routing ---------------------------------------------------------------------------
    def _handle(self, *, send_body: bool) -> None:
        raw_path = urlsplit(self.path).path
        self.hub.requests.append((self.command, unquote(raw_path)))
        parts = [unquote(p) for p in raw_path.split("/") if p]
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id = f"{parts[2]}/{parts[3]}"
            revision = parts[5] if len(parts) >= 6 and parts[4] == "revision" else "main"
            return self._api_model(repo_id, revision, send_body)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), send_body)
        return self._error(404, "NotFound", "no such route", send_body)

    def _api_model(self, repo_id: str, revision: str, send_body: bool) -> None:
        if repo_id not in self.hub.refs:
            return self._error(404, "RepoNotFound", "Repository not found", send_body)
        commit = self.hub.commit_of(repo_id, revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", "Invalid rev id", send_body)
        body = json.dumps({
            "id": repo_id, "modelId": repo_id, "sha": commit,
            "siblings": [{"rfilename": f} for f in self.hub.files(repo_id, commit)],
        }).encode()
        self._send(200, {"Content-Type": "application/json"}, body, send_body)

    def _resolve(self, repo_id: str, revision: str, filename: str, send_body: bool) -> None:
        if repo_id not in self.hub.refs:
            return self._error(404, "RepoNotFound", "Repository not found", send_body)
        commit = self.hub.commit_of(repo_id, revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", "Invalid rev id", send_body)
        path = self.hub.root / repo_id / commit / filename
        if not path.is_file():
            return self._error(404, "EntryNotFound", "Entry not found", send_body, {"X-Repo-Commit": commit})
        data = path.read_bytes()
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": commit,
            "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
            "X-Linked-Size": str(len(data)),
            "Accept-Ranges": "none",
        }
        fault = self.hub.faults.get((repo_id, filename))
        if fault == "corrupt":
            mid = len(data) // 2
            data = data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 64]) + data[mid + 64:]
        elif fault == "truncate":
            data = data[: len(data) // 2]
        self._send(200, headers, data, send_body)

    # -- output ----------------------------------------------------------------------------
    def _error(self, status: int, code: str, message: str, send_body: bool,
               extra: dict[str, str] | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        headers = {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message}
        headers.update(extra or {})
        self._send(status, headers, body, send_body)

    def _send(self, status: int, headers: dict[str, str], body: bytes, send_body: bool) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass


@pytest.fixture
def hub_server(tmp_path: Path) -> Iterator[StandInHub]:
    """A running stand-in Hub on a free port, stopped at teardown."""
    hub = StandInHub(tmp_path / "hub-root").start()
    try:
        yield hub
    finally:
        hub.stop()
