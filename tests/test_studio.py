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
