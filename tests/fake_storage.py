"""A stand-in for a storage host that serves presigned URLs (S3, GCS, Azure), for unit tests only.

The real thing is exercised by ``tests/e2e/test_cloud_storage.py`` (SeaweedFS); this one records the headers of
every request, so a test can prove that no credential reached the storage host.
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread


class StorageHost:
    """A stand-in for a storage host serving presigned URLs: records each request's path and headers, answers
    ``answers[path]`` (bytes -> 200, str -> a 302 redirect there) and 403 to anything else."""

    def __init__(self, answers: dict[str, bytes | str]):
        self.requests: list[tuple[str, dict[str, str]]] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                host.requests.append((self.path, dict(self.headers)))
                answer = answers.get(self.path)
                if isinstance(answer, str):
                    self.send_response(302)
                    self.send_header("Location", answer)
                    body = b""
                else:
                    body = answer if answer is not None else b"<Error>SignatureDoesNotMatch</Error>"
                    self.send_response(200 if answer is not None else 403)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StorageHost:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
