"""Label Studio client: both token kinds, refresh on 401, clear errors."""

from __future__ import annotations

import pytest

from ls_al_backend.studio import StudioClient, StudioError, is_jwt, stale_versions
from tests.fake_studio import LEGACY_TOKEN, PERSONAL_ACCESS_TOKEN, FakeStudio

FILE = "/data/upload/1/a.png"


def test_token_kind_is_detected() -> None:
    assert is_jwt(PERSONAL_ACCESS_TOKEN)
    assert not is_jwt(LEGACY_TOKEN)
    assert not is_jwt("a.b.c")


def test_legacy_token_is_sent_as_token() -> None:
    with FakeStudio({FILE: b"x"}) as studio:
        assert StudioClient(studio.url, LEGACY_TOKEN).download(FILE, 100) == b"x"
        assert studio.requests[-1] == ("GET", FILE, f"Token {LEGACY_TOKEN}")


def test_personal_access_token_is_exchanged_once_and_refreshed_on_401() -> None:
    with FakeStudio({FILE: b"x"}) as studio:
        client = StudioClient(studio.url, PERSONAL_ACCESS_TOKEN)
        assert client.download(FILE, 100) == b"x"
        assert client.download(FILE, 100) == b"x"
        assert studio.refreshes == 1
        studio.expire_access_tokens()
        assert client.download(FILE, 100) == b"x"
        assert studio.refreshes == 2
        assert studio.requests[-1][2] == "Bearer access-2"


def test_a_rejected_personal_access_token_says_so() -> None:
    with FakeStudio({}) as studio:
        forged = PERSONAL_ACCESS_TOKEN.replace("signature", "forged")
        with pytest.raises(StudioError, match="refused the personal access token"):
            StudioClient(studio.url, forged).download(FILE, 100)


def test_missing_file_and_oversized_file_are_errors() -> None:
    with FakeStudio({FILE: b"x" * 1000}) as studio:
        client = StudioClient(studio.url, LEGACY_TOKEN)
        with pytest.raises(StudioError, match="HTTP 404"):
            client.download("/data/upload/1/missing.png", 100)
        with pytest.raises(StudioError, match="larger than"):
            client.download(FILE, 100)


def test_unreachable_studio_is_a_studio_error() -> None:
    with pytest.raises(StudioError, match="failed"):
        StudioClient("http://127.0.0.1:9", LEGACY_TOKEN, timeout_s=2).download(FILE, 100)
    with pytest.raises(StudioError, match="LABEL_STUDIO_URL"):
        StudioClient("", LEGACY_TOKEN)


def test_stale_versions_are_this_backends_versions_beyond_the_newest_kept() -> None:
    versions = ["v1", "v2", "v3", "other", "v10"]
    assert stale_versions(versions, "v10", keep_versions=2) == ["v1", "v2"]
    assert stale_versions(versions, "v3", keep_versions=1) == ["v1", "v2"], "the newest and the one published kept"
    assert stale_versions(["other"], "v1", keep_versions=1) == [], "another model's version is never stale"


def test_predictions_are_imported_in_bulk_and_deleted_by_model_version() -> None:
    with FakeStudio({}) as studio:
        client = StudioClient(studio.url, LEGACY_TOKEN)
        created = client.import_predictions("5", [{"task": 1, "result": [], "score": 0.5, "model_version": "v1"}] * 3)
        assert created == 3 and [p["task"] for p in studio.predictions] == [1, 1, 1]
        client.import_predictions("5", [{"task": 2, "result": [], "score": 0.1, "model_version": "v2"}])
        assert client.model_versions("5") == {"v1": 3, "v2": 1}
        assert client.delete_model_version("5", "v1") == 3 and client.model_versions("5") == {"v2": 1}


def test_a_bulk_deletion_slower_than_the_request_timeout_is_waited_for_not_resent() -> None:
    with FakeStudio({}) as studio:
        client = StudioClient(studio.url, LEGACY_TOKEN, timeout_s=0.2, backoff_s=0.01, bulk_timeout_s=10)
        client.import_predictions("5", [{"task": 1, "result": [], "score": 0.5, "model_version": "v1"}] * 4)
        studio.bulk_delay_s = 0.6  # like Label Studio deleting 10,000 predictions
        assert client.delete_model_version("5", "v1") == 4, "the count of the one deletion that ran"
        assert sum(method == "DELETE" for method, _, _ in studio.requests) == 1


@pytest.mark.parametrize(
    ("base", "prefix"),
    [
        ("http://ls:8080", ""),
        ("http://ls:8080/", ""),
        ("https://host/labelstudio", "/labelstudio"),
        ("https://host/labelstudio/", "/labelstudio"),
        ("https://host/a/b", "/a/b"),
    ],
)
def test_every_path_keeps_the_prefix_of_label_studio_url(base: str, prefix: str) -> None:
    client = StudioClient(base, LEGACY_TOKEN)
    origin = base.rstrip("/").removesuffix(prefix)
    assert client.prefix == prefix
    assert client.url("/api/tasks/") == f"{origin}{prefix}/api/tasks/"
    assert client.url("api/tasks/?page=2") == f"{origin}{prefix}/api/tasks/?page=2"


def test_an_absolute_url_off_label_studios_host_gets_no_token() -> None:
    client = StudioClient("http://ls:8080/labelstudio", LEGACY_TOKEN)
    assert (
        client.url("http://ls:8080/labelstudio/data/upload/1/a.png") == "http://ls:8080/labelstudio/data/upload/1/a.png"
    )
    for other in ("http://other:8080/data/upload/1/a.png", "https://ls:8080/data/upload/1/a.png", "//other/x"):
        with pytest.raises(StudioError, match="not on Label Studio's host") as raised:
            client.url(other)
        assert raised.value.cause == "refused"


@pytest.mark.parametrize("token", [LEGACY_TOKEN, PERSONAL_ACCESS_TOKEN], ids=["legacy", "personal"])
def test_api_calls_and_files_go_under_the_prefix(token: str) -> None:
    tasks = [{"id": 1, "project": 3, "data": {"image": "/labelstudio/data/upload/3/a.png"}}]
    with FakeStudio({"/data/upload/3/a.png": b"x"}, tasks=tasks, prefix="/labelstudio") as studio:
        client = StudioClient(studio.url, token)
        assert [task["id"] for task in client.iter_tasks("3")] == [1]
        assert client.download("/data/upload/3/a.png", 100) == b"x"
        client.upsert_prediction(1, [], 0.5, "v1")
        assert studio.requests and all(path.startswith("/labelstudio/") for _, path, _ in studio.requests)
        assert [p["task"] for p in studio.predictions] == [1]
