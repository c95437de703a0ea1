"""Task images: Label Studio files with tokens, allowed hosts only, allowed folders only, EXIF applied."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ls_al_backend.images import ImageError, ImageLoader, decode_image
from ls_al_backend.studio import StudioClient
from tests.fake_studio import LEGACY_TOKEN, PERSONAL_ACCESS_TOKEN, FakeStudio


def png_bytes(width: int = 6, height: int = 4) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_exif_orientation_is_applied() -> None:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (6, 4)).save(buffer, format="JPEG", exif=exif)
    assert decode_image(buffer.getvalue()).shape == (6, 4, 3)


def test_garbage_is_not_an_image() -> None:
    with pytest.raises(ImageError, match="not a readable image"):
        decode_image(b"<html>login</html>")


@pytest.mark.parametrize("token", [LEGACY_TOKEN, PERSONAL_ACCESS_TOKEN], ids=["legacy", "personal"])
def test_label_studio_uploads_are_fetched_with_the_token_and_cached(tmp_path: Path, token: str) -> None:
    files = {"/data/upload/3/a.png": png_bytes(), "/data/local-files/?d=img/b.png": png_bytes(8, 2)}
    with FakeStudio(files) as studio:
        loader = ImageLoader(tmp_path / "cache", studio=StudioClient(studio.url, token))
        assert loader.load("/data/upload/3/a.png").shape == (4, 6, 3)
        assert loader.load("/data/local-files/?d=img/b.png").shape == (2, 8, 3)
        assert loader.load(f"{studio.url}/data/upload/3/a.png").shape == (4, 6, 3)
        fetched = len([r for r in studio.requests if r[0] == "GET"])
        assert loader.load("/data/upload/3/a.png").shape == (4, 6, 3)
        assert len([r for r in studio.requests if r[0] == "GET"]) == fetched, "second read comes from the cache"


@pytest.mark.parametrize(
    "url",
    [
        "/data/upload/../../api/current-user/whoami",
        "/data/upload/%2e%2e/%2e%2e/api/projects/",
        "/data/local-files/../../api/projects/?d=x",
        "/data/local-files/x.png",  # local files are named by ?d=, never by path
        "/data/upload/",
        "/data/upload/..%5c..%5capi/projects/",
        "{studio}/api/projects/",
        "{studio}/data/upload/3/../../../api/tasks/1/",
    ],
)
def test_a_task_url_that_leaves_label_studio_files_is_refused_not_fetched(tmp_path: Path, url: str) -> None:
    """The token must never reach another Label Studio path on a task's say-so (no authenticated relay)."""
    with FakeStudio({"/data/upload/3/a.png": png_bytes()}) as studio:
        loader = ImageLoader(tmp_path / "cache", studio=StudioClient(studio.url, LEGACY_TOKEN))
        before = len(studio.requests)
        with pytest.raises(ImageError, match="refused image URL"):
            loader.load(url.format(studio=studio.url))
        assert len(studio.requests) == before, "nothing was requested"
        assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir()), "nothing was cached"


def test_a_normalised_path_inside_the_uploads_is_fetched(tmp_path: Path) -> None:
    with FakeStudio({"/data/upload/3/a.png": png_bytes()}) as studio:
        loader = ImageLoader(tmp_path / "cache", studio=StudioClient(studio.url, LEGACY_TOKEN))
        assert loader.load("/data/upload/3/x/../a.png").shape == (4, 6, 3)
        assert [r[1].split("?")[0] for r in studio.requests if r[0] == "GET"][-1] == "/data/upload/3/a.png"


def test_label_studio_files_need_label_studio_url(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="LABEL_STUDIO_URL is not set"):
        ImageLoader(tmp_path).load("/data/upload/3/a.png")


def test_other_hosts_are_refused_unless_allowed(tmp_path: Path) -> None:
    with FakeStudio({"/public.png": png_bytes()}) as other:
        url = f"{other.url}/public.png"
        with pytest.raises(ImageError, match="ALLOWED_IMAGE_HOSTS"):
            ImageLoader(tmp_path).load(url)
        assert other.requests == [], "a refused URL is never requested"
        # The fake server demands a token, so an allowed host without one answers 401.
        with pytest.raises(ImageError, match="HTTP 401"):
            ImageLoader(tmp_path, allowed_hosts=("127.0.0.1",)).load(url)
        assert other.requests[-1][2] == "", "no credentials are sent to other hosts"


def test_local_paths_only_inside_allowed_roots(tmp_path: Path) -> None:
    allowed = tmp_path / "images"
    allowed.mkdir()
    (allowed / "a.png").write_bytes(png_bytes())
    loader = ImageLoader(tmp_path / "cache", local_roots=(str(allowed),))
    assert loader.load(str(allowed / "a.png")).shape == (4, 6, 3)
    with pytest.raises(ImageError, match="outside LOCAL_IMAGE_ROOTS"):
        loader.load(str(allowed / ".." / "secret.png"))
    with pytest.raises(ImageError, match="cannot read"):
        loader.load(str(allowed / "missing.png"))


@pytest.mark.parametrize("url", ["s3://bucket/a.png", "file:///etc/passwd", "", None])
def test_unsupported_urls_are_refused(tmp_path: Path, url) -> None:
    with pytest.raises(ImageError):
        ImageLoader(tmp_path).load(url)


def test_loaded_images_are_rgb_uint8(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.new("L", (5, 3), 7).save(path)
    image = ImageLoader(tmp_path, local_roots=(str(tmp_path),)).load(str(path))
    assert image.dtype == np.uint8 and image.shape == (3, 5, 3)


def test_16_bit_images_are_scaled_to_8_bits_by_their_range() -> None:
    values = np.array([[0, 257 * 100], [65535, 257 * 7]], dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue())
    assert decoded.shape == (2, 2, 3) and decoded.dtype == np.uint8
    assert decoded[:, :, 0].tolist() == [[0, 100], [255, 7]]


def test_images_over_the_pixel_limit_are_refused_from_their_header() -> None:
    with pytest.raises(ImageError, match="6 x 4 = 24 pixels, more than MAX_IMAGE_PIXELS=23"):
        decode_image(png_bytes(6, 4), max_pixels=23)


def test_local_files_over_the_size_limit_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes())
    loader = ImageLoader(tmp_path / "cache", local_roots=(str(tmp_path),), max_bytes=10)
    with pytest.raises(ImageError, match="more than MAX_IMAGE_BYTES=10"):
        loader.load(str(tmp_path / "a.png"))


def test_downloads_from_allowed_hosts_are_retried_after_5xx(tmp_path: Path) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    answers = [503, 502, 200]

    class Flaky(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            status = answers.pop(0)
            body = png_bytes() if status == 200 else b"busy"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        loader = ImageLoader(tmp_path, allowed_hosts=("127.0.0.1",), retries=2, backoff_s=0.01)
        assert loader.load(f"http://127.0.0.1:{server.server_address[1]}/a.png").shape == (4, 6, 3)
        assert answers == []
    finally:
        server.shutdown()
        server.server_close()


def test_the_download_cache_stays_under_its_limit(tmp_path: Path) -> None:
    files = {f"/data/upload/3/{index}.png": png_bytes(40 + index, 30) for index in range(12)}
    limit = 3 * len(files["/data/upload/3/0.png"])
    with FakeStudio(files) as studio:
        loader = ImageLoader(tmp_path / "cache", studio=StudioClient(studio.url, LEGACY_TOKEN), cache_max_bytes=limit)
        for path in files:
            loader.load(path)
            assert loader.cache_budget.size() <= limit
        assert loader.load("/data/upload/3/0.png").shape == (30, 40, 3), "an evicted file is downloaded again"
