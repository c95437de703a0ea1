"""The Label Studio ML backend HTTP contract: routes, request validation, auth and JSON errors.

Every error answers JSON ``{"error": "<what is wrong>"}`` with a 4xx status; an unexpected exception
answers 500 JSON and is logged, and never stops the server.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from ls_al_backend import __version__, metrics
from ls_al_backend.backend import Backend, UnknownProject
from ls_al_backend.jobs.contract import JobRunner
from ls_al_backend.jobs.runners import make_runner
from ls_al_backend.labeling.config import UnsupportedLabelConfig
from ls_al_backend.projects import InvalidProject, project_id_from

log = logging.getLogger(__name__)

WEBHOOK_SECRET_HEADER = "X-Webhook-Secret"


class BadRequest(Exception):
    """A request Label Studio (or anyone) sent that the backend cannot act on."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def json_body() -> dict[str, Any]:
    if request.content_length is not None and request.content_length > (request.max_content_length or 0) > 0:
        raise BadRequest(
            f"the request body is {request.content_length} bytes, more than MAX_REQUEST_BYTES="
            f"{request.max_content_length}",
            status=413,
        )
    try:
        body = request.get_json(silent=True, force=True)
    except RecursionError:  # nested deeper than the JSON parser recurses
        body = None
    if body is None:
        raise BadRequest("the request body must be JSON")
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def require(body: dict[str, Any], field: str, kind: type, description: str) -> Any:
    if field not in body:
        raise BadRequest(f"missing field {field!r} ({description})")
    value = body[field]
    if not isinstance(value, kind):
        raise BadRequest(f"field {field!r} must be {description}")
    return value


def _is_loopback(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _credentials_match(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def create_app(backend: Backend, runner: JobRunner | None = None) -> Flask:
    """The Flask app serving ``backend``, with ``runner`` (default :func:`make_runner`: RQ when ``REDIS_URL`` is
    set, else the embedded thread) taking its training requests."""
    backend.runner = runner or make_runner(backend)
    settings = backend.settings
    app = Flask(__name__)
    app.json.sort_keys = False
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes  # larger bodies: 413, never read

    if not settings.basic_auth_user and not _is_loopback(settings.host):
        log.warning(
            "no BASIC_AUTH_USER is set and the server binds %s: every route but %s is open to anyone who can reach "
            "it; set BASIC_AUTH_USER/BASIC_AUTH_PASS (and WEBHOOK_SECRET) or bind 127.0.0.1",
            settings.host,
            "/webhook" if settings.webhook_secret else "none",
        )

    @app.before_request
    def start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def count_request(response: Response) -> Response:
        """Every answer, refused ones included, by route: the URL rule (``/predict``), ``unmatched`` for a 404."""
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.observe_request(route, request.method, response.status_code, seconds)
        return response

    @app.before_request
    def authenticate() -> Response | None:
        """Basic auth guards every route when set; ``WEBHOOK_SECRET`` guards ``/webhook`` (on its own too)."""
        webhook_secret = settings.webhook_secret
        if request.path == "/webhook" and webhook_secret:
            if _credentials_match(request.headers.get(WEBHOOK_SECRET_HEADER, ""), webhook_secret):
                return None
        if settings.basic_auth_user:
            auth = request.authorization
            if (
                auth is not None
                and auth.type == "basic"
                and _credentials_match(auth.username or "", settings.basic_auth_user)
                and _credentials_match(auth.password or "", settings.basic_auth_pass)
            ):
                return None
            response = jsonify(error="authentication required")
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Basic realm="ls-al-backend"'
            return response
        if request.path == "/webhook" and webhook_secret:
            response = jsonify(error=f"the {WEBHOOK_SECRET_HEADER} header is missing or does not match WEBHOOK_SECRET")
            response.status_code = 401
            return response
        return None

    @app.errorhandler(BadRequest)
    def bad_request(error: BadRequest) -> tuple[Response, int]:
        return jsonify(error=error.message), error.status

    @app.errorhandler(InvalidProject)
    def invalid_project(error: InvalidProject) -> tuple[Response, int]:
        return jsonify(error=str(error)), 400

    @app.errorhandler(UnknownProject)
    def unknown_project(error: UnknownProject) -> tuple[Response, int]:
        return jsonify(error=str(error)), 404

    @app.errorhandler(UnsupportedLabelConfig)
    def unsupported_config(error: UnsupportedLabelConfig) -> tuple[Response, int]:
        return jsonify(error=str(error)), 422

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        return jsonify(error=error.description or error.name), error.code or 500

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[Response, int]:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return jsonify(error=f"internal error: {type(error).__name__}"), 500

    @app.get("/")
    @app.get("/health")
    def health() -> Response:
        return jsonify(status="UP", model_class="ls-al-backend", version=__version__)

    @app.post("/setup")
    def setup() -> Response:
        body = json_body()
        project = require(body, "project", (str, int), "the project id, '<id>.<timestamp>'")
        schema = require(body, "schema", str, "the label config XML")
        return jsonify(model_version=backend.setup(project, schema))

    @app.post("/predict")
    def predict() -> Response:
        body = json_body()
        tasks = require(body, "tasks", list, "a list of task objects")
        if not all(isinstance(task, dict) for task in tasks):
            raise BadRequest("every item of 'tasks' must be a task object")
        label_config = body.get("label_config")
        if label_config is not None and not isinstance(label_config, str):
            raise BadRequest("field 'label_config' must be the label config XML")
        project_id = project_id_from(body["project"]) if body.get("project") is not None else None
        config = backend.resolve_config(project_id, label_config)
        params = body.get("params") or {}
        if not isinstance(params, dict) or not isinstance(params.get("acquisition") or {}, dict):
            raise BadRequest("'params.acquisition' must be an object of acquisition settings")
        try:
            acquisition = backend.acquisition_config(config, params.get("acquisition"))
        except ValueError as error:
            raise BadRequest(str(error)) from None
        predictions = backend.predict(tasks, config, project_id, acquisition)
        served = [prediction for prediction in predictions if not prediction.failed]
        metrics.count_predictions(len(served), sum(prediction.query_regions for prediction in served))
        if predictions:  # every prediction of one call carries the version it was served with, "v<n>"
            metrics.set_model_version(project_id or "_adhoc", int(predictions[0].model_version.removeprefix("v")))
        return jsonify(results=[prediction.to_json() for prediction in predictions])

    @app.post("/webhook")
    def webhook() -> tuple[Response, int]:
        body = json_body()
        require(body, "action", str, "the event name, e.g. ANNOTATION_CREATED")
        answer = backend.handle_event(body)
        log.info("webhook %s: %s", body["action"], answer["status"])
        return jsonify(answer), 201

    @app.get("/jobs")
    def jobs() -> Response:
        return jsonify(jobs=backend.runner.jobs())  # type: ignore[union-attr]  (set above)

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        """Prometheus text format; behind basic auth like every route when BASIC_AUTH_USER is set."""
        body, content_type = metrics.exposition(backend.runner.metric_collectors())  # type: ignore[union-attr]
        return Response(body, content_type=content_type)

    @app.get("/versions")
    def versions() -> Response:
        project = request.args.get("project")
        project_id = project_id_from(project) if project else None
        return jsonify(versions=backend.versions(project_id))

    return app
