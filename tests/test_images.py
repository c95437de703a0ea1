"""Task images: Label Studio files with tokens, allowed hosts only, allowed folders only, EXIF applied."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prometheus_client import REGISTRY

from ls_al_backend.images import IMAGE_ERROR_CAUSES, ImageError, ImageLoader, decode_image
from ls_al_backend.studio import StudioClient
from tests.fake_storage import StorageHost
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


# --- cloud storage, Label Studio's resolve / storage-data endpoints, a path prefix, failure causes ---------------


def fileuri(uri: str) -> str:
    return base64.urlsafe_b64encode(uri.encode()).decode()


def cached_keys(loader: ImageLoader, *keys: str) -> set[str]:
    """Which of ``keys`` the loader's cache holds a file for."""
    return {key for key in keys if (loader.cache_dir / hashlib.sha256(key.encode()).hexdigest()).exists()}


@pytest.mark.parametrize(
    "uri", ["s3://bucket/images/a.png", "gs://bucket/a b.png", "azure-blob://container/a.png", "azure-spi://c/a.png"]
)
def test_cloud_uris_are_read_through_the_tasks_presign_endpoint_with_the_token(tmp_path: Path, uri: str) -> None:
    presign = f"/tasks/7/presign/?fileuri={fileuri(uri)}"
    with FakeStudio({presign: png_bytes()}) as studio:
        loader = ImageLoader(tmp_path / "cache", studio=StudioClient(studio.url, LEGACY_TOKEN))
        assert loader.load(uri, task_id=7).shape == (4, 6, 3)
        assert studio.requests == [("GET", presign, f"Token {LEGACY_TOKEN}")]
        assert base64.urlsafe_b64decode(presign.split("fileuri=")[1]).decode() == uri


def test_a_cloud_uri_without_its_task_id_is_a_clear_error(tmp_path: Path) -> None:
    with FakeStudio({}) as studio:
        loader = ImageLoader(tmp_path / "cache", studio=StudioClient(studio.url, LEGACY_TOKEN))
        for task_id in (None, "x", -1):
            with pytest.raises(ImageError, match="needs its task's id") as raised:
                loader.load("s3://bucket/a.png", task_id=task_id)
            assert raised.value.cause == "unsupported"
        assert studio.requests == []


@pytest.mark.parametrize("token", [LEGACY_TOKEN, PERSONAL_ACCESS_TOKEN], ids=["legacy", "personal"])
def test_a_presign_redirect_is_followed_once_without_the_token(tmp_path: Path, token: str) -> None:
    uri = "s3://bucket/images/a.png"
    presign = f"/tasks/7/presign/?fileuri={fileuri(uri)}"
    signed = "/bucket/images/a.png?X-Amz-Signature=abc&X-Amz-Expires=60"
    with StorageHost({signed: png_bytes()}) as storage, FakeStudio({}, redirects={presign: storage.url + signed}) as ls:
        loader = ImageLoader(tmp_path / "cache", studio=StudioClient(ls.url, token))
        assert loader.load(uri, task_id=7).shape == (4, 6, 3)
        assert ls.calls("GET", "/tasks/") == [presign]
        assert [r[2] for r in ls.requests if r[1] == presign][0].startswith(("Token ", "Bearer "))
        assert [path for path, _ in storage.requests] == [signed]
        headers = {name.lower() for name in storage.requests[0][1]}
        assert "authorization" not in headers and "cookie" not in headers, "no credentials reach the storage host"


def test_a_redirect_from_the_storage_host_is_not_followed(tmp_path: Path) -> None:
    uri = "s3://bucket/a.png"
    presign = f"/tasks/7/presign/?fileuri={fileuri(uri)}"
    with FakeStudio({"/data/upload/3/a.png": png_bytes()}) as ls:
        with StorageHost({"/signed": f"{ls.url}/data/upload/3/a.png"}) as storage:
            ls.redirects[presign] = storage.url + "/signed"
            loader = ImageLoader(tmp_path / "cache", studio=StudioClient(ls.url, LEGACY_TOKEN))
            with pytest.raises(ImageError, match="HTTP 302 \\(a second redirect is not followed\\)") as raised:
                loader.load(uri, task_id=7)
            assert raised.value.cause == "http_status"
            assert ls.calls("GET", "/data/upload/") == [], "the storage host's redirect target was never requested"


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/a.png", "s3://bucket/a.png"])
def test_a_presign_redirect_to_a_url_that_is_not_http_is_refused(tmp_path: Path, location: str) -> None:
    uri = "gs://bucket/a.png"
    presign = f"/tasks/9/presign/?fileuri={fileuri(uri)}"
    with FakeStudio({}, redirects={presign: location}) as ls:
        loader = ImageLoader(tmp_path / "cache", studio=StudioClient(ls.url, LEGACY_TOKEN))
        with pytest.raises(ImageError, match="only http\\(s\\) redirects are followed") as raised:
            loader.load(uri, task_id=9)
        assert raised.value.cause == "refused"


def test_the_cache_keys_on_the_cloud_uri_not_on_the_presigned_url(tmp_path: Path) -> None:
    uri = "s3://bucket/a.png"
    presign = f"/tasks/7/presign/?fileuri={fileuri(uri)}"
    with StorageHost({"/a.png?sig=1": png_bytes(), "/a.png?sig=2": png_bytes()}) as storage:
        with FakeStudio({}, redirects={presign: storage.url + "/a.png?sig=1"}) as ls:
            loader = ImageLoader(tmp_path / "cache", studio=StudioClient(ls.url, LEGACY_TOKEN))
            assert loader.load(uri, task_id=7).shape == (4, 6, 3)
            assert cached_keys(loader, uri, storage.url + "/a.png?sig=1", presign) == {uri}
            ls.redirects[presign] = storage.url + "/a.png?sig=2"  # a new signature on every presign
            before = (len(ls.requests), len(storage.requests))
            assert loader.load(uri, task_id=7).shape == (4, 6, 3)
            # The task list names the same file by its resolve URL, for another task too: same cache entry.
            assert loader.load(f"/tasks/8/resolve/?fileuri={fileuri(uri)}").shape == (4, 6, 3)
            assert loader.load(f"{ls.url}/tasks/7/resolve/?fileuri={fileuri(uri)}").shape == (4, 6, 3)
            assert (len(ls.requests), len(storage.requests)) == before, "served from the cache"


def test_resolve_and_storage_data_urls_are_fetched_with_the_token(tmp_path: Path) -> None:
    uri = "s3://bucket/b.png"
    files = {
        f"/tasks/5/resolve/?fileuri={fileuri(uri)}": png_bytes(8, 2),
        "/storage-data/uploaded/?filepath=upload/3/c.png": png_bytes(5, 3),
        "/tasks/6/resolve/?fileuri=bm90LWEtdXJp": png_bytes(7, 1),  # base64 of "not-a-uri": cached by its path
    }
    with FakeStudio(files) as ls:
        loader = ImageLoader(tmp_path / "cache", studio=StudioClient(ls.url, LEGACY_TOKEN))
        assert loader.load(f"{ls.url}/tasks/5/resolve/?fileuri={fileuri(uri)}").shape == (2, 8, 3)
        assert loader.load("/storage-data/uploaded/?filepath=upload/3/c.png").shape == (3, 5, 3)
        assert loader.load("/tasks/6/resolve/?fileuri=bm90LWEtdXJp").shape == (1, 7, 3)
        assert {path for _, path, _ in ls.requests} == set(files)
        assert {auth for _, _, auth in ls.requests} == {f"Token {LEGACY_TOKEN}"}
        assert cached_keys(loader, uri, "/tasks/6/resolve/?fileuri=bm90LWEtdXJp") == {
            uri,
            "/tasks/6/resolve/?fileuri=bm90LWEtdXJp",
        }


@pytest.mark.parametrize(
    "url",
    [
        "/tasks/1/presign/../../api/current-user/whoami?fileuri=eA==",
        "/tasks/1/resolve/%2e%2e/%2e%2e/api/projects/?fileuri=eA==",
        "/tasks/x/resolve/?fileuri=eA==",
        "/tasks/\uff11/resolve/?fileuri=eA==",  # a full-width digit
        "/tasks//resolve/?fileuri=eA==",
        "/tasks/1/resolve/",
        "/tasks/1/presign/?fileuri=",
        "/tasks/1/resolve/?d=eA==",
        "/tasks/1/resolve/?fileuri=eA==&fileuri=eQ==",
        "/tasks/1/resolve/?fileuri=eA==&page=2",
        "/tasks/1/resolve/extra?fileuri=eA==",
        "/tasks/1/annotations/?fileuri=eA==",
        "/tasks/1/?fileuri=eA==",
        "/storage-data/uploaded/",
        "/storage-data/uploaded/?filepath=",
        "/storage-data/uploaded/?filepath=a&filepath=b",
        "/storage-data/uploaded/../../api/projects/?filepath=upload/1/a.png",
        "/storage-data/other/?filepath=upload/1/a.png",
        "{studio}/tasks/1/presign/../../../api/tasks/1/?fileuri=eA==",
    ],
)
def test_lookalikes_of_the_storage_endpoints_are_refused_not_fetched(tmp_path: Path, url: str) -> None:
    with FakeStudio({}) as studio:
        loader = ImageLoader(tmp_path / "cache", studio=StudioClient(studio.url, LEGACY_TOKEN))
        with pytest.raises(ImageError, match="refused image URL") as raised:
            loader.load(url.format(studio=studio.url), task_id=1)
        assert raised.value.cause == "refused"
        assert studio.requests == [], "nothing was requested"


def test_label_studio_under_a_path_prefix(tmp_path: Path) -> None:
    uri = "s3://bucket/a.png"
    presign = f"/tasks/4/presign/?fileuri={fileuri(uri)}"
    with FakeStudio({"/data/upload/3/a.png": png_bytes(), presign: png_bytes(8, 2)}, prefix="/labelstudio") as ls:
        assert ls.url.endswith("/labelstudio")
        loader = ImageLoader(tmp_path / "cache", studio=StudioClient(ls.url, PERSONAL_ACCESS_TOKEN))
        root = ls.url.removesuffix("/labelstudio")
        for url in (
            "/labelstudio/data/upload/3/a.png",  # as Label Studio names uploads under a prefix
            "/data/upload/3/a.png",  # without the prefix: joined under it
            f"{ls.url}/data/upload/3/a.png",
            f"{root}/data/upload/3/a.png",
        ):
            assert loader.load(url).shape == (4, 6, 3)
            (loader.cache_dir / hashlib.sha256(b"/data/upload/3/a.png").hexdigest()).unlink()  # fetch every time
        assert loader.load(uri, task_id=4).shape == (2, 8, 3)
        gets = [path for method, path, _ in ls.requests if method == "GET"]
        assert gets == ["/labelstudio/data/upload/3/a.png"] * 4 + [f"/labelstudio{presign}"]
        assert ls.calls("POST", "/labelstudio/api/token/refresh/"), "the token refresh keeps the prefix too"
        for refused in ("/labelstudio/data/upload/../../api/projects/", f"{ls.url}/labelstudio/data/upload/3/a.png"):
            with pytest.raises(ImageError, match="refused image URL"):
                loader.load(refused)
        assert len(ls.requests) == len(gets) + 1


def test_every_failure_has_a_documented_cause(tmp_path: Path) -> None:
    (tmp_path / "big.png").write_bytes(png_bytes(50, 50))
    (tmp_path / "junk.png").write_bytes(b"<html>login</html>")
    with FakeStudio({"/data/upload/3/a.png": png_bytes()}) as ls:
        studio = StudioClient(ls.url, LEGACY_TOKEN)
        loader = ImageLoader(tmp_path / "cache", studio=studio, local_roots=(str(tmp_path),), max_pixels=100)
        unreachable = ImageLoader(
            tmp_path / "cache2", studio=StudioClient("http://127.0.0.1:9", LEGACY_TOKEN, retries=0, timeout_s=2)
        )
        failures = {
            "no_url": lambda: loader.load(None),
            "unsupported": lambda: loader.load("ftp://host/a.png"),
            "not_configured": lambda: ImageLoader(tmp_path / "cache3").load("/data/upload/3/a.png"),
            "refused": lambda: loader.load("http://example.invalid/a.png"),
            "http_status": lambda: loader.load("/data/upload/3/missing.png"),
            "network": lambda: unreachable.load("/data/upload/3/a.png"),
            "too_large": lambda: loader.load(str(tmp_path / "big.png")),
            "not_an_image": lambda: loader.load(str(tmp_path / "junk.png")),
            "local_file": lambda: loader.load(str(tmp_path / "missing.png")),
        }
        assert set(failures) == set(IMAGE_ERROR_CAUSES)
        for cause, fail in failures.items():
            counted = REGISTRY.get_sample_value("ls_al_image_fetch_failures_total", {"cause": cause}) or 0.0
            with pytest.raises(ImageError) as raised:
                fail()
            assert raised.value.cause == cause, (cause, str(raised.value))
            assert REGISTRY.get_sample_value("ls_al_image_fetch_failures_total", {"cause": cause}) == counted + 1
