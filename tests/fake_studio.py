"""A tiny HTTP server that imitates the parts of Label Studio's API the backend calls, for unit tests only.

The real Label Studio is exercised by ``tests/e2e``; this stand-in records every call, so token handling,
paging, write-back and retries can be tested in milliseconds. It serves files, tasks, predictions,
project updates and Data Manager views, and can answer the next N requests with 503. It can be served under a
path prefix (Label Studio behind a proxy at a sub-path) and answer chosen paths with a redirect (the presign
endpoint of a storage with presigned URLs).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LEGACY_TOKEN = "0123456789abcdef0123456789abcdef01234567"


def make_jwt(payload: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.signature"


PERSONAL_ACCESS_TOKEN = make_jwt({"token_type": "refresh", "jti": "1"})


class FakeStudio:
    """Serves ``files`` (path -> bytes) and ``tasks`` (Label Studio task dicts) to requests with a valid token.

    ``prefix`` (e.g. ``"/labelstudio"``): everything is served under it, a path without it is 404; ``files``,
    ``redirects`` and the API routes are named without it, :attr:`requests` records paths with it.
    ``redirects`` (path -> Location): answered ``303 See Other`` to a request with a valid token.
    """

    def __init__(
        self,
        files: dict[str, bytes],
        tasks: list[dict] | None = None,
        prefix: str = "",
        redirects: dict[str, str] | None = None,
    ):
        self.files = files
        self.prefix = prefix.rstrip("/")
        self.redirects = redirects or {}
        self.tasks = {task["id"]: task for task in tasks or []}
        self.predictions: list[dict] = []
        self.next_prediction_id = 0
        self.views: list[dict] = []
        self.projects: dict[str, dict] = {}
        self.refreshes = 0
        self.unavailable = 0  # answer this many next requests (API or file) with 503
        self.valid_access_tokens: set[str] = set()
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Authorization header)
        self.refuse_bulk_import = False  # answer the predictions import with a 400
        self.bulk_delay_s = 0.0  # seconds the predictions import and a model version's deletion take
        self.lock = threading.Lock()
        studio = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: bytes | object, content_type: str = "application/json") -> None:
                if not isinstance(body, bytes):
                    body = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> object:
                length = int(self.headers.get("Content-Length", 0))
                return json.loads(self.rfile.read(length) or b"{}")

            def _authorised(self) -> bool:
                auth = self.headers.get("Authorization", "")
                return auth == f"Token {LEGACY_TOKEN}" or (
                    auth.startswith("Bearer ") and auth.removeprefix("Bearer ") in studio.valid_access_tokens
                )

            def _handle(self, method: str) -> None:
                studio.requests.append((method, self.path, self.headers.get("Authorization", "")))
                body = self._body() if method in ("POST", "PATCH", "DELETE") else None
                if studio.prefix and not self.path.startswith(studio.prefix + "/"):
                    return self._send(404, {"detail": "Not found (outside the prefix)."})
                path = self.path[len(studio.prefix) :]
                if method == "POST" and path == "/api/token/refresh/":
                    if body.get("refresh") != PERSONAL_ACCESS_TOKEN:
                        return self._send(401, {"detail": "invalid token"})
                    with studio.lock:
                        studio.refreshes += 1
                        access = f"access-{studio.refreshes}"
                        studio.valid_access_tokens.add(access)
                    return self._send(200, {"access": access})
                if not self._authorised():
                    return self._send(401, {"detail": "Authentication credentials were not provided."})
                with studio.lock:
                    if studio.unavailable > 0:
                        studio.unavailable -= 1
                        return self._send(503, {"detail": "unavailable"})
                if method == "GET" and path in studio.redirects:
                    self.send_response(303)
                    self.send_header("Location", studio.redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if method == "GET" and path in studio.files:
                    return self._send(200, studio.files[path], "application/octet-stream")
                with studio.lock:
                    status, answer = studio.route(method, path, body)
                self._send(status, answer)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self._handler = Handler
        self._serving = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{self.prefix}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def stop(self) -> None:
        """Stop answering (connections are refused) until :meth:`restart`, like a Label Studio that went down."""
        if self._serving:
            self.server.shutdown()
            self.server.server_close()
            self._serving = False

    def restart(self) -> None:
        """Serve again on the same port, with the same tasks, files and predictions."""
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self._serving = True

    def route(self, method: str, path: str, body: object) -> tuple[int, object]:
        url = urlsplit(path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        route = (method, re.sub(r"/\d+/", "/<id>/", url.path))
        number = int(m.group(1)) if (m := re.search(r"/(\d+)/$", url.path)) else None
        if route == ("GET", "/api/tasks/"):
            page, size = int(query.get("page", 1)), int(query.get("page_size", 100))
            tasks = [task for task in self.tasks.values() if str(task.get("project")) == query.get("project")]
            if "query" in query:
                included = json.loads(query["query"])["selectedItems"]["included"]
                tasks = [task for task in tasks if task["id"] in included]
            if (page - 1) * size >= len(tasks) and page > 1:
                return 404, {"detail": "Invalid page."}
            tasks = [
                {**task, "predictions": [p for p in self.predictions if p["task"] == task["id"]]}
                for task in tasks[(page - 1) * size : page * size]
            ]  # as Label Studio lists them with fields=all
            return 200, {"tasks": tasks, "total": len(tasks)}
        if route == ("GET", "/api/tasks/<id>/"):
            return (200, self.tasks[number]) if number in self.tasks else (404, {"detail": "Not found."})
        if route == ("GET", "/api/predictions/"):
            return 200, [p for p in self.predictions if str(p["task"]) == query.get("task")]
        if route == ("POST", "/api/predictions/"):
            self.next_prediction_id += 1
            prediction = {**body, "id": self.next_prediction_id}
            self.predictions.append(prediction)
            return 201, prediction
        if route == ("POST", "/api/projects/<id>/import/predictions"):
            time.sleep(self.bulk_delay_s)
            if self.refuse_bulk_import:
                return 400, {"detail": "refused by the test"}
            for item in body:
                self.next_prediction_id += 1
                self.predictions.append({**item, "id": self.next_prediction_id})
            return 201, {"created": len(body)}
        if route == ("PATCH", "/api/predictions/<id>/"):
            prediction = next(p for p in self.predictions if p["id"] == number)
            prediction.update(body)
            return 200, prediction
        if route == ("GET", "/api/projects/<id>/model-versions/"):  # one project: every prediction is its own
            return 200, dict(Counter(p["model_version"] for p in self.predictions))
        if route == ("DELETE", "/api/projects/<id>/model-versions/"):
            time.sleep(self.bulk_delay_s)
            before = len(self.predictions)
            self.predictions = [p for p in self.predictions if p["model_version"] != body["model_version"]]
            return 200, {"deleted_predictions": before - len(self.predictions)}
        if route == ("PATCH", "/api/projects/<id>/"):
            version = body.get("model_version")
            if version and not any(p["model_version"] == version for p in self.predictions):
                return 400, {"model_version": ["Model version doesn't exist either as live model or as static"]}
            self.projects.setdefault(str(number), {}).update(body)
            return 200, self.projects[str(number)]
        if route == ("GET", "/api/dm/views/"):
            return 200, [view for view in self.views if str(view["project"]) == query.get("project")]
        if route == ("POST", "/api/dm/views/"):
            view = {**body, "id": len(self.views) + 1}
            self.views.append(view)
            return 201, view
        if route == ("PATCH", "/api/dm/views/<id>/"):
            view = next(v for v in self.views if v["id"] == number)
            view.update(body)
            return 200, view
        return 404, {"detail": "Not found."}

    def calls(self, method: str, prefix: str) -> list[str]:
        return [path for m, path, _ in self.requests if m == method and path.startswith(prefix)]

    def expire_access_tokens(self) -> None:
        self.valid_access_tokens.clear()

    def __enter__(self) -> FakeStudio:
        self.thread.start()
        self._serving = True
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
