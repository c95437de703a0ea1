"""Reading task images: Label Studio files, allowed http(s) hosts and allowed local folders.

URLs are resolved in this order:

- ``/data/upload/...``, ``/data/local-files/?d=...`` and absolute URLs on the ``LABEL_STUDIO_URL`` host:
  fetched from Label Studio with its token, but only once the path, percent-decoded and normalised (``..``
  resolved), still lies under ``/data/upload/`` or is ``/data/local-files/``: the token never reaches any other
  Label Studio path (``/data/upload/../../api/...`` is refused, not fetched);
- other ``http(s)`` URLs: fetched without credentials, only if the host is in ``ALLOWED_IMAGE_HOSTS``
  (the backend must not become a relay into the network it runs in);
- anything else is a local path, read only inside ``LOCAL_IMAGE_ROOTS``.

Downloads are retried after connection errors and 5xx answers, and cached on disk by URL. Files over
``MAX_IMAGE_BYTES`` and images over ``MAX_IMAGE_PIXELS`` are refused before they are read whole. EXIF orientation
is applied, because Label Studio draws masks at the image's oriented size; 16-bit and other non-8-bit images are
scaled to 8 bits.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import posixpath
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import numpy as np
import requests
from PIL import Image, ImageOps, UnidentifiedImageError

from ls_al_backend.config import Settings
from ls_al_backend.storage import FolderBudget
from ls_al_backend.studio import StudioClient, StudioError, read_limited, with_retries

log = logging.getLogger(__name__)

_STUDIO_PREFIXES = ("/data/upload/", "/data/local-files", "data/upload/")
#: The only Label Studio paths fetched with its token (after normalisation).
STUDIO_FILE_ROOTS = ("/data/upload/", "/data/local-files/")
_WIDE_INTEGER_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


class ImageError(ValueError):
    """A task image cannot be read; the message says why."""


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
                    f"MAX_IMAGE_PIXELS={max_pixels}"
                )
            oriented = ImageOps.exif_transpose(image)
            if oriented.mode in _WIDE_INTEGER_MODES:
                return _wide_to_rgb(np.asarray(oriented))
            return np.asarray(oriented.convert("RGB"))
    except Image.DecompressionBombError as error:  # Pillow's own guard, above twice its default limit
        raise ImageError(f"image is larger than MAX_IMAGE_PIXELS={max_pixels}: {error}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, ImageError):
            raise
        raise ImageError(f"not a readable image: {error}") from None


def _wide_to_rgb(values: np.ndarray) -> np.ndarray:
    """``[H, W]`` 16/32-bit integer intensities -> ``[H, W, 3]`` uint8, scaled so the type's range maps to 0-255
    (a 16-bit image by 65535, a 32-bit one by its own maximum)."""
    values = values.astype(np.float64)
    top = 65535.0 if values.max(initial=0) <= 65535 else values.max()
    grey = np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def studio_file_url(url: str) -> str:
    """The Label Studio file a task URL names, as a path (and query) relative to the Label Studio root, after
    percent-decoding and resolving ``.`` and ``..``; :class:`ImageError` unless it lies under
    :data:`STUDIO_FILE_ROOTS` (``/data/local-files/`` only with its ``?d=`` query)."""
    parts = urlsplit(url)
    raw_path = parts.path if parts.path.startswith("/") else "/" + parts.path
    decoded = unquote(raw_path)
    if "\\" in decoded or "\x00" in decoded:
        raise ImageError(f"refused image URL {url!r}: backslashes and NUL bytes are not allowed in Label Studio paths")
    normalised = posixpath.normpath(decoded) + ("/" if decoded.endswith("/") else "")
    upload, local_files = STUDIO_FILE_ROOTS
    inside = (normalised.startswith(upload) and len(normalised) > len(upload)) or (
        normalised in (local_files, local_files.rstrip("/")) and parts.query.startswith("d=")
    )
    if not inside:
        raise ImageError(
            f"refused image URL {url!r}: it resolves to {normalised!r}, outside {' and '.join(STUDIO_FILE_ROOTS)}; "
            "the backend fetches nothing else from Label Studio with its token"
        )
    return urlunsplit(("", "", normalised, parts.query, ""))


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

    def load(self, url: str) -> np.ndarray:
        """Read the image a task names; raise :class:`ImageError` with a clear reason otherwise."""
        if not isinstance(url, str) or not url.strip():
            raise ImageError("the task has no image URL")
        url = url.strip()
        if url.startswith(_STUDIO_PREFIXES) or self._is_studio_url(url):
            return decode_image(self._cached(studio_file_url(url), self._from_studio), self.max_pixels)
        scheme = urlsplit(url).scheme.lower()
        if scheme in ("http", "https"):
            return decode_image(self._cached(url, self._from_allowed_host), self.max_pixels)
        if scheme and len(scheme) > 1:  # s3://, gs://, file://, ... (a one-letter scheme is a Windows drive)
            raise ImageError(f"unsupported image URL scheme {scheme!r} in {url!r}")
        return decode_image(self._from_local_path(url), self.max_pixels)

    def _is_studio_url(self, url: str) -> bool:
        return self.studio is not None and urlsplit(url).netloc.lower() == self.studio.host

    def _cached(self, url: str, fetch) -> bytes:
        path = self.cache_dir / hashlib.sha256(url.encode()).hexdigest()
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # never downloaded, or pruned from the cache
            pass
        else:
            self.cache_budget.used(path)
            return data
        data = fetch(url)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.cache_dir, prefix=".download-")
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
        self.cache_budget.added(len(data))
        return data

    def _from_studio(self, url: str) -> bytes:
        if self.studio is None:
            raise ImageError(f"{url!r} is a Label Studio file but LABEL_STUDIO_URL is not set")
        try:
            return self.studio.download(url, self.max_bytes)
        except StudioError as error:
            raise ImageError(str(error)) from None

    def _from_allowed_host(self, url: str) -> bytes:
        host = (urlsplit(url).hostname or "").lower()
        if "*" not in self.allowed_hosts and host not in self.allowed_hosts:
            raise ImageError(
                f"image host {host!r} is not allowed; add it to ALLOWED_IMAGE_HOSTS to let the backend fetch it"
            )
        try:
            response = with_retries(
                lambda: requests.get(url, timeout=self.timeout_s, stream=True, allow_redirects=False),
                requests.RequestException,
                self.retries,
                self.backoff_s,
                f"GET {url}",
            )
        except requests.RequestException as error:
            raise ImageError(f"cannot download {url!r}: {error}") from None
        if response.status_code != 200:
            raise ImageError(
                f"downloading {url!r} answered HTTP {response.status_code}"
                + (" (redirects are not followed)" if 300 <= response.status_code < 400 else "")
            )
        try:
            return read_limited(response, self.max_bytes)
        except StudioError as error:
            raise ImageError(f"{url!r}: {error}") from None

    def _from_local_path(self, path_text: str) -> bytes:
        path = Path(path_text).resolve()
        if not any(path.is_relative_to(root) for root in self.local_roots):
            raise ImageError(
                f"local path {path_text!r} is outside LOCAL_IMAGE_ROOTS; add its folder there to allow reading it"
            )
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise ImageError(
                    f"local file {path_text!r} is {size} bytes, more than MAX_IMAGE_BYTES={self.max_bytes}"
                )
            return path.read_bytes()
        except OSError as error:
            raise ImageError(f"cannot read {path_text!r}: {error.strerror}") from None
