"""Every call to the Label Studio REST API goes through :class:`StudioClient`.

Two token kinds are accepted in ``LABEL_STUDIO_API_KEY``:

- a legacy API token, sent as ``Authorization: Token <key>``;
- a personal access token (a JWT refresh token), exchanged at ``POST /api/token/refresh/`` for a
  short-lived access token sent as ``Authorization: Bearer <access>``; refreshed again on a 401.

``LABEL_STUDIO_URL`` may carry a path prefix (Label Studio behind a reverse proxy at a sub-path, started with
``LABEL_STUDIO_HOST=https://host/labelstudio``): every path is appended to it, as the SDK's ``concat_urls`` does.
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
from requests.auth import AuthBase

from ls_al_backend.config import Settings

log = logging.getLogger(__name__)


class StudioError(RuntimeError):
    """Label Studio could not be reached or refused a request.

    ``cause`` names the kind of failure for counting (see ``images.IMAGE_ERROR_CAUSES``): ``"network"`` (no
    answer), ``"http_status"`` (an error answer), ``"too_large"``, ``"refused"`` (a redirect not followed,
    a URL off Label Studio's host), ``"not_configured"``; None when unclassified.
    """

    def __init__(self, message: str, cause: str | None = None):
        super().__init__(message)
        self.cause = cause


#: Statuses of a redirect; Label Studio answers 303 from ``/tasks/<id>/presign/`` when the storage presigns URLs.
REDIRECT_STATUSES = (301, 302, 303, 307, 308)


class NoCredentials(AuthBase):
    """Sends a request with no ``Authorization`` or ``Cookie`` header; passing it as ``auth`` also keeps requests
    from adding credentials of its own from ``~/.netrc``."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.pop("Authorization", None)
        request.headers.pop("Cookie", None)
        return request


def get_without_credentials(url: str, timeout_s: float, retries: int, backoff_s: float, what: str) -> requests.Response:
    """A streamed ``GET url`` carrying no credentials (:class:`NoCredentials`) and following no redirect, retried like
    :func:`with_retries` (``what`` names it in the log)."""
    return with_retries(
        lambda: requests.get(url, timeout=timeout_s, stream=True, allow_redirects=False, auth=NoCredentials()),
        requests.RequestException,
        retries,
        backoff_s,
        what,
    )


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

    @property
    def prefix(self) -> str:
        """The path Label Studio is served under: ``""`` at the host's root, ``"/labelstudio"`` behind a proxy."""
        return urlsplit(self.base_url).path.rstrip("/")

    def url(self, path_or_url: str) -> str:
        """Absolute URL for a path relative to Label Studio's root (``/api/...``, ``/data/...``), appended to
        ``LABEL_STUDIO_URL`` with its prefix; an absolute URL is returned as it is, but only on this host (the
        token goes nowhere else)."""
        parts = urlsplit(path_or_url)
        if parts.scheme or parts.netloc:
            if (parts.scheme.lower(), parts.netloc.lower()) != (urlsplit(self.base_url).scheme.lower(), self.host):
                raise StudioError(f"{path_or_url!r} is not on Label Studio's host {self.host}", cause="refused")
            return path_or_url
        return self.base_url + path_or_url.lstrip("/")

    def _refresh_access_token(self) -> str:
        response = self.session.post(
            self.url("/api/token/refresh/"), json={"refresh": self.api_key}, timeout=self.timeout_s
        )
        if response.status_code != 200:
            raise StudioError(
                f"Label Studio refused the personal access token (HTTP {response.status_code} from "
                "/api/token/refresh/); check LABEL_STUDIO_API_KEY",
                cause="http_status",
            )
        self._access_token = response.json()["access"]
        return self._access_token

    def _authorization(self, refresh: bool = False) -> str:
        if not self.api_key:
            raise StudioError(
                "LABEL_STUDIO_API_KEY is not set; Label Studio files and API need a token", cause="not_configured"
            )
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
            raise StudioError(f"{method} {url} failed: {error}", cause="network") from error
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
        """Bytes of a file served by Label Studio (``/data/upload/...``, ``/tasks/<id>/presign/?fileuri=...``, ...),
        retried like :meth:`request_with_retries`; a body over ``max_bytes`` raises :class:`StudioError`.

        A redirect (Label Studio's answer for a cloud storage that presigns URLs) is followed once, to an http(s)
        URL only, without the token or any other credential; a further redirect from there is not followed.
        """
        response = self.request_with_retries("GET", path_or_url, stream=True, allow_redirects=False)
        if response.status_code in REDIRECT_STATUSES and "Location" in response.headers:
            location = urljoin(response.url or self.url(path_or_url), response.headers["Location"])
            response.close()
            return self._download_redirected(path_or_url, location, max_bytes)
        if response.status_code != 200:
            raise StudioError(
                f"Label Studio answered HTTP {response.status_code} for {path_or_url}", cause="http_status"
            )
        return read_limited(response, max_bytes)

    def _download_redirected(self, path_or_url: str, location: str, max_bytes: int) -> bytes:
        """GET the (presigned) URL Label Studio redirected ``path_or_url`` to, without credentials."""
        target = urlsplit(location)
        if target.scheme.lower() not in ("http", "https"):
            raise StudioError(
                f"Label Studio redirected {path_or_url} to a {target.scheme!r} URL; only http(s) redirects are "
                "followed",
                cause="refused",
            )
        # The presigned URL's query is a credential of its own: messages name only its host.
        where = f"the storage host {target.netloc} (redirected from {path_or_url})"
        try:
            response = get_without_credentials(
                location,
                self.timeout_s,
                self.retries,
                self.backoff_s,
                f"GET {target.scheme}://{target.netloc}{target.path}",
            )
        except requests.RequestException as error:
            raise StudioError(f"{where} cannot be reached: {type(error).__name__}", cause="network") from None
        if response.status_code != 200:
            redirected = " (a second redirect is not followed)" if response.status_code in REDIRECT_STATUSES else ""
            raise StudioError(f"{where} answered HTTP {response.status_code}{redirected}", cause="http_status")
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
            raise StudioError(f"response larger than {max_bytes} bytes", cause="too_large")
        chunks.append(chunk)
    return b"".join(chunks)
