"""A stand-in for the few Label Studio routes that pool scoring calls, so the benchmark needs no Label Studio.

:meth:`~ls_al_backend.jobs.pipeline.Pipeline.score` reads a chunk of tasks (``GET /api/tasks/``), then stores the
chunk's predictions, each with its acquisition score, in one request (``POST
/api/projects/<id>/import/predictions``). This server answers exactly those, from memory, for any token. Images
are not served: the tasks name local files, read through ``LOCAL_IMAGE_ROOTS``.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class TaskServer:
    """Serves ``tasks`` (Label Studio task dicts) and records the predictions written back."""

    def __init__(self, tasks: list[dict[str, Any]]):
        self.tasks = {int(task["id"]): task for task in tasks}
        self.predictions: list[dict[str, Any]] = []  # {"task", "score", "model_version"} (result dropped)
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                with server.lock:
                    status, answer = server.route(method, self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def do_PATCH(self) -> None:
                self._answer("PATCH")

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self._thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """(HTTP status, JSON answer) for one request."""
        url = urlsplit(path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        if method == "GET" and url.path == "/api/tasks/":
            tasks = [task for task in self.tasks.values() if str(task["project"]) == query.get("project")]
            if "query" in query:
                included = set(json.loads(query["query"])["selectedItems"]["included"])
                tasks = [task for task in tasks if task["id"] in included]
            page, size = int(query.get("page", 1)), int(query.get("page_size", 100))
            if page > 1 and (page - 1) * size >= len(tasks):
                return 404, {"detail": "Invalid page."}
            return 200, {"tasks": tasks[(page - 1) * size : page * size], "total": len(tasks)}
        if method == "POST" and re.fullmatch(r"/api/projects/\w+/import/predictions", url.path):
            self.predictions += [
                {"task": item["task"], "score": item["score"], "model_version": item["model_version"]} for item in body
            ]
            return 201, {"created": len(body)}
        return 404, {"detail": f"{method} {url.path} is not served by the benchmark's Label Studio stand-in"}

    def scores(self) -> dict[int, float]:
        """Task id -> the score of the last prediction stored for it."""
        with self.lock:
            return {item["task"]: item["score"] for item in self.predictions}

    def __enter__(self) -> TaskServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.shutdown()
        self.http.server_close()
