"""End-to-end fixtures: a real Label Studio 1.23.2 and a real ``ls-al-backend``, both on 127.0.0.1.

Label Studio runs from its own virtual environment ($LS_VENV, default ``.ls-venv``, made by
``scripts/label_studio.sh install``) and starts once per test session. Our backend is started the way the
README tells users to: ``ls-al-backend serve`` with ``LABEL_STUDIO_URL``, ``LABEL_STUDIO_API_KEY`` and ``DATA_DIR``,
once per kind of API key (legacy token, personal access token).

These tests run only with ``LS_AL_E2E=1``; then a Label Studio or backend that does not start is a failure
(with the server's log), never a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    LEGACY_TOKEN,
    TOKEN_KINDS,
    BackendPool,
    LabelStudio,
    RunningBackend,
    StartError,
    Studio,
    TinyImage,
    make_tiny_images,
)

E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(
        reason="end-to-end tests drive a real Label Studio: run `scripts/label_studio.sh install` once, "
        "then set LS_AL_E2E=1"
    )
    for item in items:
        if E2E_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)
            if os.environ.get("LS_AL_E2E") != "1":
                item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure, append the tails of the backend's and Label Studio's logs to the report."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    backend = funcargs.get("backend")
    if isinstance(backend, RunningBackend):
        report.sections.append((f"ls-al-backend log ({backend.token_kind}), last lines", backend.log_tail()))
    label_studio = funcargs.get("label_studio")
    if isinstance(label_studio, LabelStudio):
        report.sections.append(("Label Studio log, last lines", label_studio.log_tail()))


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    """Label Studio with SQLite in a temporary folder, an admin user and legacy tokens enabled."""
    with LabelStudio.running(tmp_path_factory.mktemp("label-studio")) as studio:
        yield studio


@pytest.fixture(scope="session")
def legacy_token(label_studio: LabelStudio) -> str:
    """The admin's legacy token (``Authorization: Token ...``), fixed by ``label-studio start --user-token``."""
    return LEGACY_TOKEN


@pytest.fixture(scope="session")
def personal_access_token(label_studio: LabelStudio) -> str:
    """A personal access token (JWT refresh token), created with ``POST /api/token/`` by the legacy-token user."""
    try:
        return label_studio.personal_access_token()
    except StartError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def studio(label_studio: LabelStudio, legacy_token: str) -> Studio:
    """The tests' own REST client (the admin, authenticated with the legacy token)."""
    return Studio(label_studio.url, f"Token {legacy_token}")


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory: pytest.TempPathFactory) -> list[TinyImage]:
    """Three CamVid validation images scaled down to about 120x90, as PNG files."""
    try:
        return make_tiny_images(tmp_path_factory.mktemp("tiny-images"))
    except StartError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def backends(
    label_studio: LabelStudio,
    legacy_token: str,
    personal_access_token: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BackendPool]:
    pool = BackendPool(
        label_studio,
        {"legacy_token": legacy_token, "personal_access_token": personal_access_token},
        tmp_path_factory.mktemp("backends"),
    )
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture(scope="session", params=TOKEN_KINDS)
def backend(request: pytest.FixtureRequest, backends: BackendPool) -> RunningBackend:
    """Our backend, with LABEL_STUDIO_API_KEY set to the legacy token or to a personal access token."""
    try:
        return backends.get(request.param)
    except StartError as error:
        pytest.fail(str(error))
