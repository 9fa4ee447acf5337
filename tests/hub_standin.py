"""A local stand-in of the few Hugging Face Hub API endpoints claptune uses, for tests.

Runs on 127.0.0.1 in a thread; point ``HF_ENDPOINT`` (or ``HfApi(endpoint=...)``) at ``url``.
It records every request (so a test can assert that offline mode made none) and implements:
``POST /api/repos/create``, ``POST /api/validate-yaml`` (the model card's header must be a
YAML mapping), ``POST /api/models/{repo}/branch/{branch}``,
``POST /api/models/{repo}/preupload/{rev}`` (every file "regular": no LFS transfer) and
``POST /api/models/{repo}/commit/{rev}`` (ndjson; base64 file contents kept in ``repos``),
and file downloads, ``HEAD``/``GET /{repo}/resolve/{rev}/{file}`` of what ``repos`` holds
(put files there with ``add_file``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class HubStandIn:
    def __init__(self):
        # repo_id -> {"private": bool, "branches": {branch: {path: bytes}}}
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.validated: list[str] = []  # README.md contents sent to /api/validate-yaml
        self.commit = "0" * 39 + "1"  # what every resolve answers as the repository's commit
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _reply(self, status: int, body: dict | None = None) -> None:
                data = json.dumps(body or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _resolve(self, send_body: bool) -> None:
                path = unquote(urlparse(self.path).path)
                stand_in.requests.append(("GET" if send_body else "HEAD", path))
                m = re.fullmatch(r"/(.+)/resolve/([^/]+)/(.+)", path)
                repo = stand_in.repos.get(m.group(1)) if m else None
                files = repo["branches"].get(m.group(2)) if repo else None
                if files is None or m.group(3) not in files:
                    self.send_response(404)
                    self.send_header(
                        "X-Error-Code", "EntryNotFound" if files is not None else "RepoNotFound"
                    )
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = files[m.group(3)]
                self.send_response(200)
                self.send_header("X-Repo-Commit", stand_in.commit)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if send_body:
                    self.wfile.write(data)

            def do_HEAD(self):
                self._resolve(send_body=False)

            def do_GET(self):
                self._resolve(send_body=True)

            def do_POST(self):
                path = unquote(urlparse(self.path).path)
                stand_in.requests.append(("POST", path))
                body = self._body()
                url = f"http://{self.headers['Host']}"
                if path == "/api/repos/create":
                    req = json.loads(body)
                    repo_id = (
                        f"{req['organization']}/{req['name']}"
                        if req.get("organization")
                        else req["name"]
                    )
                    if repo_id in stand_in.repos:
                        return self._reply(
                            409,
                            {
                                "error": "You already created this model repo",
                                "url": f"{url}/{repo_id}",
                            },
                        )
                    private = bool(req.get("private")) or req.get("visibility") == "private"
                    stand_in.repos[repo_id] = {"private": private, "branches": {"main": {}}}
                    return self._reply(200, {"url": f"{url}/{repo_id}"})
                if path == "/api/validate-yaml":  # the README's metadata header
                    import yaml

                    content = json.loads(body)["content"]
                    try:
                        header = content.split("---", 2)[1]
                        assert isinstance(yaml.safe_load(header), dict)
                    except Exception as err:  # noqa: BLE001 - any failure is invalid metadata
                        return self._reply(400, {"errors": [{"message": str(err)}]})
                    stand_in.validated.append(content)
                    return self._reply(200, {"errors": [], "warnings": []})
                if m := re.fullmatch(r"/api/models/(.+)/branch/(.+)", path):
                    branches = stand_in.repos[m.group(1)]["branches"]
                    if m.group(2) in branches:
                        return self._reply(409, {"error": "Reference already exists"})
                    branches[m.group(2)] = dict(branches["main"])
                    return self._reply(200)
                if m := re.fullmatch(r"/api/models/(.+)/preupload/(.+)", path):
                    files = json.loads(body)["files"]
                    return self._reply(
                        200,
                        {
                            "files": [
                                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                for f in files
                            ]
                        },
                    )
                if m := re.fullmatch(r"/api/models/(.+)/commit/(.+)", path):
                    repo_id, revision = m.group(1), m.group(2)
                    files = stand_in.repos[repo_id]["branches"].setdefault(revision, {})
                    for line in body.splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            files[item["value"]["path"]] = base64.b64decode(
                                item["value"]["content"]
                            )
                    oid = hashlib.sha1(body).hexdigest()
                    return self._reply(
                        200, {"commitUrl": f"{url}/{repo_id}/commit/{oid}", "commitOid": oid}
                    )
                return self._reply(404, {"error": f"no endpoint {path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add_file(self, repo_id: str, filename: str, data: bytes, branch: str = "main") -> None:
        repo = self.repos.setdefault(repo_id, {"private": False, "branches": {"main": {}}})
        repo["branches"].setdefault(branch, {})[filename] = data

    def __enter__(self) -> HubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
