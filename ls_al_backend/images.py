"""Reading task images: Label Studio files and cloud storage, allowed http(s) hosts and allowed local folders.

URLs are resolved in this order:

- cloud storage URIs (``s3://``, ``gs://``, ``azure-blob://``, ``azure-spi://``; :data:`CLOUD_SCHEMES`): read
  through Label Studio's ``/tasks/<task id>/presign/?fileuri=<base64 of the URI>`` with its token, the way the
  SDK's ``get_local_path`` does, so the task id is needed. Label Studio answers with the bytes (a storage without
  presigned URLs) or a redirect to a presigned URL on the storage host, which is followed once, to an http(s) URL
  only, without the token (``StudioClient.download``);
- Label Studio's file endpoints, relative or absolute on the ``LABEL_STUDIO_URL`` host, with or without its path
  prefix: fetched with the token, but only once the path, percent-decoded and normalised (``..`` resolved), is one
  of :data:`STUDIO_FILE_ROOTS` with the query it needs (``/data/upload/<file>``, ``/data/local-files/?d=``,
  ``/storage-data/uploaded/?filepath=``, ``/tasks/<digits>/resolve/?fileuri=``, ``/tasks/<digits>/presign/?fileuri=``):
  the token never reaches any other Label Studio path (``/data/upload/../../api/...`` is refused, not fetched);
- other ``http(s)`` URLs: fetched without credentials, only if the host is in ``ALLOWED_IMAGE_HOSTS``
  (the backend must not become a relay into the network it runs in);
- anything else is a local path, read only inside ``LOCAL_IMAGE_ROOTS``.

Downloads are retried after connection errors and 5xx answers, and cached on disk: by the cloud URI for cloud
files (also when a task names it by its ``/tasks/<id>/resolve/?fileuri=`` URL; never by a presigned URL), else by
the normalised URL. Files over ``MAX_IMAGE_BYTES`` and images over ``MAX_IMAGE_PIXELS`` are refused before they
are read whole. EXIF orientation is applied, because Label Studio draws masks at the image's oriented size; 16-bit
and other non-8-bit images are scaled to 8 bits. Every failure is an :class:`ImageError` with a ``cause`` out of
:data:`IMAGE_ERROR_CAUSES`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import os
import posixpath
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import numpy as np
import requests
from PIL import Image, ImageOps, UnidentifiedImageError

from ls_al_backend.config import Settings
from ls_al_backend.metrics import count_image_failure
from ls_al_backend.storage import FolderBudget
from ls_al_backend.studio import StudioClient, StudioError, get_without_credentials, read_limited

log = logging.getLogger(__name__)

#: URL schemes of the cloud storages whose files Label Studio serves through ``/tasks/<id>/presign/``: S3 and
#: S3-compatible stores, Google Cloud Storage, Azure Blob Storage (account key, or service principal in Label
#: Studio Enterprise).
CLOUD_SCHEMES = ("s3", "gs", "azure-blob", "azure-spi")
#: The only Label Studio paths fetched with its token (after normalisation, relative to Label Studio's root).
STUDIO_FILE_ROOTS = (
    "/data/upload/",
    "/data/local-files/?d=",
    "/storage-data/uploaded/?filepath=",
    "/tasks/<id>/resolve/?fileuri=",
    "/tasks/<id>/presign/?fileuri=",
)
_STUDIO_PREFIXES = ("/data/upload/", "/data/local-files", "data/upload/", "/storage-data/", "/tasks/")
_TASK_STORAGE_PATH = re.compile(r"/tasks/[0-9]+/(?:resolve|presign)/?")
#: ``ImageError.cause`` values, for counting failures by kind.
IMAGE_ERROR_CAUSES = {
    "no_url": "the task names no image",
    "unsupported": "a URL scheme the backend does not read, or a cloud storage URI without its task id",
    "not_configured": "a Label Studio file or cloud URI, but LABEL_STUDIO_URL or LABEL_STUDIO_API_KEY is not set",
    "refused": "outside what the backend may fetch: a Label Studio path off its file endpoints, a host not in "
    "ALLOWED_IMAGE_HOSTS, a local path outside LOCAL_IMAGE_ROOTS, a redirect to a URL that is not http(s)",
    "http_status": "Label Studio, the storage host or an allowed host answered an error status (a refused token too)",
    "network": "no answer: connection refused, timed out, name not resolved",
    "too_large": "more than MAX_IMAGE_BYTES bytes or MAX_IMAGE_PIXELS pixels",
    "not_an_image": "bytes that do not decode as an image",
    "local_file": "a local file inside LOCAL_IMAGE_ROOTS that cannot be read (missing, unreadable)",
}
_WIDE_INTEGER_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


class ImageError(ValueError):
    """A task image cannot be read; the message says why, ``cause`` (a key of :data:`IMAGE_ERROR_CAUSES`) says
    which kind of failure it is."""

    def __init__(self, message: str, cause: str):
        super().__init__(message)
        self.cause = cause


def decode_image(data: bytes, max_pixels: int = 50_000_000) -> np.ndarray:
    """Encoded image bytes -> ``[H, W, 3]`` uint8 RGB with EXIF orientation applied.

    An image over ``max_pixels`` (width x height, read from its header) is refused before its pixels are decoded;
    16- and 32-bit integer images are scaled to 8 bits by their value range, grayscale and CMYK converted to RGB.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > max_pixels:
                raise ImageError(
                    f"image is {image.width} x {image.height} = {image.width * image.height} pixels, more than "
                    f"MAX_IMAGE_PIXELS={max_pixels}",
                    "too_large",
                )
            oriented = ImageOps.exif_transpose(image)
            if oriented.mode in _WIDE_INTEGER_MODES:
                return _wide_to_rgb(np.asarray(oriented))
            return np.asarray(oriented.convert("RGB"))
    except Image.DecompressionBombError as error:  # Pillow's own guard, above twice its default limit
        raise ImageError(f"image is larger than MAX_IMAGE_PIXELS={max_pixels}: {error}", "too_large") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, ImageError):
            raise
        raise ImageError(f"not a readable image: {error}", "not_an_image") from None


def _wide_to_rgb(values: np.ndarray) -> np.ndarray:
    """``[H, W]`` 16/32-bit integer intensities -> ``[H, W, 3]`` uint8, scaled so the type's range maps to 0-255
    (a 16-bit image by 65535, a 32-bit one by its own maximum)."""
    values = values.astype(np.float64)
    top = 65535.0 if values.max(initial=0) <= 65535 else values.max()
    grey = np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def studio_file_url(url: str, prefix: str = "") -> str:
    """The Label Studio file a task URL names, as a path (and query) relative to Label Studio's root, after
    percent-decoding, resolving ``.`` and ``..`` and removing Label Studio's path ``prefix`` (``"/labelstudio"``
    when ``LABEL_STUDIO_URL`` has one; a path without it is taken as relative to Label Studio's root);
    :class:`ImageError` unless it is one of :data:`STUDIO_FILE_ROOTS` with the query that endpoint needs."""
    parts = urlsplit(url)
    raw_path = parts.path if parts.path.startswith("/") else "/" + parts.path
    decoded = unquote(raw_path)
    if "\\" in decoded or "\x00" in decoded:
        raise ImageError(
            f"refused image URL {url!r}: backslashes and NUL bytes are not allowed in Label Studio paths", "refused"
        )
    normalised = posixpath.normpath(decoded) + ("/" if decoded.endswith("/") else "")
    prefix = prefix.rstrip("/")
    if prefix and (normalised == prefix or normalised.startswith(prefix + "/")):
        normalised = normalised[len(prefix) :] or "/"
    if not _is_studio_file(normalised, parts.query):
        raise ImageError(
            f"refused image URL {url!r}: it resolves to {normalised!r}, none of {', '.join(STUDIO_FILE_ROOTS)}; "
            "the backend fetches nothing else from Label Studio with its token",
            "refused",
        )
    return urlunsplit(("", "", normalised, parts.query, ""))


def _is_studio_file(path: str, query: str) -> bool:
    """Whether a normalised path relative to Label Studio's root, with its query, is a file endpoint."""
    if path.startswith("/data/upload/") and len(path) > len("/data/upload/"):
        return True
    if path in ("/data/local-files/", "/data/local-files"):
        return query.startswith("d=")
    if path in ("/storage-data/uploaded/", "/storage-data/uploaded"):
        return _only_parameter(query, "filepath")
    return _TASK_STORAGE_PATH.fullmatch(path) is not None and _only_parameter(query, "fileuri")


def _only_parameter(query: str, name: str) -> bool:
    """The query holds exactly one parameter, ``name``, once, with a value."""
    parameters = parse_qs(query, keep_blank_values=True)
    return list(parameters) == [name] and len(parameters[name]) == 1 and bool(parameters[name][0])


def presign_path(cloud_uri: str, task_id: object) -> str:
    """``/tasks/<task id>/presign/?fileuri=<urlsafe base64 of cloud_uri>``: where Label Studio serves a task's
    cloud storage file; :class:`ImageError` without a task id."""
    if task_id is None or isinstance(task_id, bool) or not re.fullmatch(r"[0-9]+", str(task_id)):
        raise ImageError(
            f"cloud storage URI {cloud_uri!r} needs its task's id (got {task_id!r}): Label Studio serves it "
            "through /tasks/<task id>/presign/",
            "unsupported",
        )
    return f"/tasks/{task_id}/presign/?fileuri={base64.urlsafe_b64encode(cloud_uri.encode()).decode()}"


def cloud_uri_of(studio_path: str) -> str | None:
    """The cloud storage URI that a ``/tasks/<id>/resolve/?fileuri=`` or ``/presign/`` path (as returned by
    :func:`studio_file_url`) names, or None (another endpoint, or a ``fileuri`` that is not base64 of one)."""
    parts = urlsplit(studio_path)
    if not _TASK_STORAGE_PATH.fullmatch(parts.path):
        return None
    encoded = parse_qs(parts.query).get("fileuri", [""])[0]
    try:
        uri = base64.urlsafe_b64decode(encoded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return uri if urlsplit(uri).scheme.lower() in CLOUD_SCHEMES else None


class ImageLoader:
    """Loads task images as ``[H, W, 3]`` uint8 RGB arrays."""

    def __init__(
        self,
        cache_dir: Path,
        studio: StudioClient | None = None,
        allowed_hosts: tuple[str, ...] = (),
        local_roots: tuple[str, ...] = (),
        timeout_s: float = 30.0,
        max_bytes: int = 64 * 1024 * 1024,
        max_pixels: int = 50_000_000,
        retries: int = 5,
        backoff_s: float = 0.5,
        cache_max_bytes: int = 4 * 1024**3,
    ):
        self.cache_dir = Path(cache_dir)
        self.cache_budget = FolderBudget(self.cache_dir, cache_max_bytes)
        self.studio = studio
        self.allowed_hosts = {host.lower() for host in allowed_hosts}
        self.local_roots = tuple(Path(root).resolve() for root in local_roots)
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.retries = retries
        self.backoff_s = backoff_s

    @classmethod
    def from_settings(cls, settings: Settings, studio: StudioClient | None) -> ImageLoader:
        """The loader the backend uses: the image settings, and ``studio`` for Label Studio files."""
        return cls(
            settings.image_cache_dir,
            studio=studio,
            allowed_hosts=settings.allowed_image_hosts,
            local_roots=settings.local_image_roots,
            timeout_s=settings.image_timeout_s,
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            retries=settings.studio_retries,
            backoff_s=settings.studio_backoff_s,
            cache_max_bytes=round(settings.image_cache_max_mb * 1e6),
        )

    def load(self, url: str, task_id: int | str | None = None) -> np.ndarray:
        """Read the image a task names (``task_id``: the task's id, needed for cloud storage URIs); raise
        :class:`ImageError` with a clear reason and its ``cause`` otherwise."""
        try:
            return decode_image(self._read(url, task_id), self.max_pixels)
        except ImageError as error:
            count_image_failure(error.cause)
            raise

    def _read(self, url: object, task_id: int | str | None) -> bytes:
        """The encoded bytes of the image ``url`` names, from the cache or fetched (see the module docstring)."""
        if not isinstance(url, str) or not url.strip():
            raise ImageError("the task has no image URL", "no_url")
        url = url.strip()
        scheme = urlsplit(url).scheme.lower()
        if scheme in CLOUD_SCHEMES:
            path = presign_path(url, task_id)
            return self._cached(url, lambda: self._from_studio(path))
        if self._is_studio_path(url) or self._is_studio_url(url):
            path = studio_file_url(url, self.studio.prefix if self.studio else "")
            return self._cached(cloud_uri_of(path) or path, lambda: self._from_studio(path))
        if scheme in ("http", "https"):
            return self._cached(url, lambda: self._from_allowed_host(url))
        if scheme and len(scheme) > 1:  # file://, ftp://, ... (a one-letter scheme is a Windows drive)
            raise ImageError(f"unsupported image URL scheme {scheme!r} in {url!r}", "unsupported")
        return self._from_local_path(url)

    def _is_studio_path(self, url: str) -> bool:
        """A path on Label Studio's file endpoints, with or without the prefix of ``LABEL_STUDIO_URL``."""
        prefix = self.studio.prefix if self.studio else ""
        if prefix and url.startswith(prefix + "/"):
            url = url[len(prefix) :]
        return url.startswith(_STUDIO_PREFIXES)

    def _is_studio_url(self, url: str) -> bool:
        return self.studio is not None and urlsplit(url).netloc.lower() == self.studio.host

    def _cached(self, key: str, fetch: Callable[[], bytes]) -> bytes:
        """The bytes cached under ``key``, else ``fetch()`` (then cached)."""
        path = self.cache_dir / hashlib.sha256(key.encode()).hexdigest()
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # never downloaded, or pruned from the cache
            pass
        else:
            self.cache_budget.used(path)
            return data
        data = fetch()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.cache_dir, prefix=".download-")
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
        self.cache_budget.added(len(data))
        return data

    def _from_studio(self, path: str) -> bytes:
        if self.studio is None:
            raise ImageError(f"{path!r} is a Label Studio file but LABEL_STUDIO_URL is not set", "not_configured")
        try:
            return self.studio.download(path, self.max_bytes)
        except StudioError as error:
            raise ImageError(str(error), error.cause or "http_status") from None

    def _from_allowed_host(self, url: str) -> bytes:
        host = (urlsplit(url).hostname or "").lower()
        if "*" not in self.allowed_hosts and host not in self.allowed_hosts:
            raise ImageError(
                f"image host {host!r} is not allowed; add it to ALLOWED_IMAGE_HOSTS to let the backend fetch it",
                "refused",
            )
        try:
            response = get_without_credentials(url, self.timeout_s, self.retries, self.backoff_s, f"GET {url}")
        except requests.RequestException as error:
            raise ImageError(f"cannot download {url!r}: {error}", "network") from None
        if response.status_code != 200:
            raise ImageError(
                f"downloading {url!r} answered HTTP {response.status_code}"
                + (" (redirects are not followed)" if 300 <= response.status_code < 400 else ""),
                "http_status",
            )
        try:
            return read_limited(response, self.max_bytes)
        except StudioError as error:
            raise ImageError(f"{url!r}: {error}", error.cause or "too_large") from None

    def _from_local_path(self, path_text: str) -> bytes:
        path = Path(path_text).resolve()
        if not any(path.is_relative_to(root) for root in self.local_roots):
            raise ImageError(
                f"local path {path_text!r} is outside LOCAL_IMAGE_ROOTS; add its folder there to allow reading it",
                "refused",
            )
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise ImageError(
                    f"local file {path_text!r} is {size} bytes, more than MAX_IMAGE_BYTES={self.max_bytes}",
                    "too_large",
                )
            return path.read_bytes()
        except OSError as error:
            raise ImageError(f"cannot read {path_text!r}: {error.strerror}", "local_file") from None
