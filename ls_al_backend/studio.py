"""Every call to the Label Studio REST API goes through :class:`StudioClient`.

Two token kinds are accepted in ``LABEL_STUDIO_API_KEY``:

- a legacy API token, sent as ``Authorization: Token <key>``;
- a personal access token (a JWT refresh token), exchanged at ``POST /api/token/refresh/`` for a
  short-lived access token sent as ``Authorization: Bearer <access>``; refreshed again on a 401.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from ls_al_backend.config import Settings

log = logging.getLogger(__name__)


class StudioError(RuntimeError):
    """Label Studio could not be reached or refused a request."""


def is_jwt(token: str) -> bool:
    """True for a JWT (personal access token), False for a legacy hex token."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except ValueError:
        return False
    return isinstance(header, dict) and "alg" in header


class StudioClient:
    """Authenticated HTTP access to one Label Studio instance."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout_s: float = 30.0,
        session: requests.Session | None = None,
        retries: int = 5,
        backoff_s: float = 0.5,
        bulk_timeout_s: float = 600.0,
    ):
        if not base_url:
            raise StudioError("LABEL_STUDIO_URL is not set")
        self.base_url = base_url.rstrip("/") + "/"
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.bulk_timeout_s = bulk_timeout_s  # requests whose work grows with the project (a timed-out one is resent)
        self.retries = retries
        self.backoff_s = backoff_s
        self.session = session or requests.Session()
        self._access_token: str | None = None
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc.lower()

    def url(self, path_or_url: str) -> str:
        """Absolute URL for an API path (``/api/...``, ``/data/...``) or an absolute URL on this host."""
        return urljoin(self.base_url, path_or_url)

    def _refresh_access_token(self) -> str:
        response = self.session.post(
            self.url("/api/token/refresh/"), json={"refresh": self.api_key}, timeout=self.timeout_s
        )
        if response.status_code != 200:
            raise StudioError(
                f"Label Studio refused the personal access token (HTTP {response.status_code} from "
                "/api/token/refresh/); check LABEL_STUDIO_API_KEY"
            )
        self._access_token = response.json()["access"]
        return self._access_token

    def _authorization(self, refresh: bool = False) -> str:
        if not self.api_key:
            raise StudioError("LABEL_STUDIO_API_KEY is not set; Label Studio files and API need a token")
        if not is_jwt(self.api_key):
            return f"Token {self.api_key}"
        with self._lock:
            if refresh or self._access_token is None:
                self._refresh_access_token()
            return f"Bearer {self._access_token}"

    def request(self, method: str, path_or_url: str, **kwargs) -> requests.Response:
        """Send an authenticated request; a 401 with a personal access token refreshes it and retries once."""
        kwargs.setdefault("timeout", self.timeout_s)
        url = self.url(path_or_url)
        headers = dict(kwargs.pop("headers", {}) or {})
        headers["Authorization"] = self._authorization()
        try:
            response = self.session.request(method, url, headers=headers, **kwargs)
            if response.status_code == 401 and is_jwt(self.api_key):
                headers["Authorization"] = self._authorization(refresh=True)
                response = self.session.request(method, url, headers=headers, **kwargs)
        except requests.RequestException as error:
            raise StudioError(f"{method} {url} failed: {error}") from error
        return response

    def request_with_retries(self, method: str, path_or_url: str, **kwargs) -> requests.Response:
        """:meth:`request`, retried ``retries`` times with exponential backoff (``backoff_s``, doubling) after a
        connection error or a 5xx answer; the last answer (any status) is returned, or the last error raised."""
        return with_retries(
            lambda: self.request(method, path_or_url, **kwargs),
            StudioError,
            self.retries,
            self.backoff_s,
            f"{method} {path_or_url}",
        )

    def call(self, method: str, path: str, **kwargs) -> Any:
        """JSON API call, retried like :meth:`request_with_retries`; an error answer raises :class:`StudioError`
        with Label Studio's message (a 4xx is never retried)."""
        response = self.request_with_retries(method, path, **kwargs)
        if response.status_code >= 500:
            raise StudioError(f"{method} {path}: HTTP {response.status_code} after {self.retries + 1} attempts")
        if response.status_code >= 400:
            raise StudioError(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def iter_tasks(
        self, project_id: str, task_ids: list[int] | None = None, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Tasks of a project with their annotations (``fields=all``), page by page; only ``task_ids`` if given.

        Never ``GET /api/tasks/<id>/``: for a task without predictions Label Studio answers that by calling
        the ML backend's ``/predict`` while we wait.
        """
        params: dict[str, Any] = {"project": project_id, "fields": "all", "page_size": page_size}
        if task_ids is not None:
            params["query"] = json.dumps({"selectedItems": {"all": False, "included": [int(i) for i in task_ids]}})
        page = 1
        while True:
            response = self.request_with_retries("GET", "/api/tasks/", params={**params, "page": page})
            if response.status_code == 404:  # past the last page
                return
            if response.status_code != 200:
                raise StudioError(f"listing tasks of project {project_id}: HTTP {response.status_code}")
            body = response.json()
            tasks = body.get("tasks", []) if isinstance(body, dict) else body
            yield from tasks
            if len(tasks) < page_size:
                return
            page += 1

    def upsert_prediction(self, task_id: int, result: list, score: float, model_version: str) -> None:
        """Store one prediction per (task, model version): update it if it exists, else create it."""
        existing = self.call("GET", "/api/predictions/", params={"task": task_id})
        items = existing.get("results", existing) if isinstance(existing, dict) else existing or []
        body = {"task": task_id, "result": result, "score": float(score), "model_version": model_version}
        same_version = [item for item in items if item.get("model_version") == model_version]
        if same_version:
            self.call("PATCH", f"/api/predictions/{same_version[0]['id']}/", json=body)
        else:
            self.call("POST", "/api/predictions/", json=body)

    def import_predictions(self, project_id: str, predictions: list[dict[str, Any]]) -> int:
        """Create predictions (``{"task", "result", "score", "model_version"}`` each) in one request, Label Studio's
        ``/api/projects/<id>/import/predictions``; returns how many it created."""
        answer = self.call(
            "POST", f"/api/projects/{project_id}/import/predictions", json=predictions, timeout=self.bulk_timeout_s
        )
        return int((answer or {}).get("created", len(predictions)))

    def model_versions(self, project_id: str) -> dict[str, int]:
        """The model versions of the project's stored predictions and how many predictions each has."""
        return dict(self.call("GET", f"/api/projects/{project_id}/model-versions/") or {})

    def delete_model_version(self, project_id: str, model_version: str) -> int:
        """Delete every prediction of ``model_version`` in the project in one request; returns how many."""
        answer = self.call(
            "DELETE",
            f"/api/projects/{project_id}/model-versions/",
            json={"model_version": model_version},
            timeout=self.bulk_timeout_s,
        )
        return int(answer.get("deleted_predictions", 0)) if isinstance(answer, dict) else 0

    def set_project_model_version(self, project_id: str, model_version: str) -> bool:
        """Make ``model_version`` the project's current version; False when Label Studio refuses it.

        Label Studio 1.23 only accepts a version that an ML backend title or a stored prediction carries.
        """
        try:
            self.call("PATCH", f"/api/projects/{project_id}/", json={"model_version": model_version})
        except StudioError as error:
            if "HTTP 400" not in str(error):
                raise
            log.warning("project %s: Label Studio refused model_version %s: %s", project_id, model_version, error)
            return False
        return True

    def ensure_view(self, project_id: str, title: str, data: dict[str, Any]) -> int:
        """Create or update the Data Manager view called ``title``; return its id."""
        views = self.call("GET", "/api/dm/views/", params={"project": project_id}) or []
        body = {"project": int(project_id), "data": {"title": title, **data}}
        for view in views:
            if view.get("data", {}).get("title") == title:
                self.call("PATCH", f"/api/dm/views/{view['id']}/", json=body)
                return int(view["id"])
        return int(self.call("POST", "/api/dm/views/", json=body)["id"])

    def download(self, path_or_url: str, max_bytes: int) -> bytes:
        """Bytes of a file served by Label Studio (``/data/upload/...``, ``/data/local-files/?d=...``), retried like
        :meth:`request_with_retries`; a body over ``max_bytes`` raises :class:`StudioError`."""
        response = self.request_with_retries("GET", path_or_url, stream=True)
        if response.status_code != 200:
            raise StudioError(f"Label Studio answered HTTP {response.status_code} for {path_or_url}")
        return read_limited(response, max_bytes)


def with_retries(
    send: Callable[[], requests.Response],
    errors: type[Exception] | tuple[type[Exception], ...],
    retries: int,
    backoff_s: float,
    what: str,
) -> requests.Response:
    """``send()``, retried ``retries`` times with exponential backoff (``backoff_s``, doubling) after one of
    ``errors`` or a 5xx answer; the last answer (any status) is returned, or the last error raised."""
    for attempt in range(retries + 1):
        try:
            response = send()
        except errors:
            if attempt == retries:
                raise
        else:
            if response.status_code < 500 or attempt == retries:
                return response
            response.close()
        log.warning("%s: attempt %d failed; retrying", what, attempt + 1)
        time.sleep(backoff_s * 2**attempt)
    raise AssertionError("unreachable")


def stale_versions(versions: Iterable[str], model_version: str, keep_versions: int) -> list[str]:
    """Of the model versions ``versions``, this backend's (``v<N>``) beyond the ``keep_versions`` newest, oldest
    first; ``model_version`` is always kept and other models' versions are never stale."""
    numbers = {number for name in versions if (number := version_number(name)) is not None}
    current = version_number(model_version)
    kept = set(sorted(numbers | {current} - {None})[-keep_versions:]) | {current}
    return [f"v{number}" for number in sorted(numbers - kept)]


def has_prediction(task: dict[str, Any], model_version: str) -> bool:
    """The task (as listed with ``fields=all``) holds a prediction of ``model_version``."""
    predictions = task.get("predictions") or []
    return any(isinstance(item, dict) and item.get("model_version") == model_version for item in predictions)


def version_number(model_version: object) -> int | None:
    """N of a model version named ``v<N>`` (this backend's naming), else None (another model's prediction)."""
    match = re.fullmatch(r"v(\d+)", model_version) if isinstance(model_version, str) else None
    return int(match.group(1)) if match else None


def studio_client(settings: Settings) -> StudioClient | None:
    """The client for ``LABEL_STUDIO_URL`` with the ``LABEL_STUDIO_API_KEY``, timeout and retry settings; None when
    no Label Studio is configured."""
    if not settings.label_studio_url:
        return None
    return StudioClient(
        settings.label_studio_url,
        settings.label_studio_api_key,
        timeout_s=settings.image_timeout_s,
        retries=settings.studio_retries,
        backoff_s=settings.studio_backoff_s,
        bulk_timeout_s=settings.studio_bulk_timeout_s,
    )


def read_limited(response: requests.Response, max_bytes: int) -> bytes:
    """Body of a streamed response, refusing bodies larger than ``max_bytes``."""
    chunks, size = [], 0
    for chunk in response.iter_content(chunk_size=1 << 16):
        size += len(chunk)
        if size > max_bytes:
            raise StudioError(f"response larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
