"""A local stand-in of the Hugging Face Hub's HTTP API: the endpoints ``HfApi.create_repo`` and
``HfApi.upload_folder`` call (repo creation, README metadata validation, pre-upload, commit),
enough for the real ``huggingface_hub`` client to run unchanged against it
(``HF_ENDPOINT=http://127.0.0.1:PORT``).

Every file is answered ``uploadMode: regular`` in the pre-upload step, so its bytes arrive
base64-encoded inside the commit (the real Hub sends large files through LFS / Xet storage,
which this stub does not implement). The commit's files are decoded and kept in
``repos[repo_id]`` so a test can compare them with what was on disk.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HubStub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.created: list[dict[str, Any]] = []
        self.tokens: list[str] = []
        self.requests: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.tokens.append(self.headers.get("Authorization", ""))
                stub.requests.append(f"POST {self.path}")
                status, reply = stub.handle(self.path.split("?")[0], body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, path: str, body: bytes) -> tuple[int, Any]:
        if path == "/api/repos/create":
            req = json.loads(body)
            repo_id = "/".join(p for p in (req.get("organization"), req["name"]) if p)
            self.created.append(req)
            self.repos.setdefault(repo_id, {})
            return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id}
        if path == "/api/validate-yaml":
            return 200, {}
        parts = path.split("/")  # /api/models/ORG/NAME/(preupload|commit)/REV
        if len(parts) == 7 and parts[:3] == ["", "api", "models"]:
            repo_id = f"{parts[3]}/{parts[4]}"
            if repo_id not in self.repos:
                return 404, {"error": "Repository not found"}
            if parts[5] == "preupload":
                files = json.loads(body)["files"]
                modes = [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                    for f in files
                ]
                return 200, {"files": modes}
            if parts[5] == "commit":
                return 200, self.commit(repo_id, body)
        return 404, {"error": f"not in the stub: {path}"}

    def commit(self, repo_id: str, body: bytes) -> dict[str, Any]:
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                value = item["value"]
                assert value["encoding"] == "base64"
                self.repos[repo_id][value["path"]] = base64.b64decode(value["content"])
        oid = "1" * 40
        return {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid}
