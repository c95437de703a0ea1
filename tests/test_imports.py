"""Imports point one way: server -> jobs -> backend -> modes -> {acquisition, labeling, model}; none of the last
four reaches back into the application (settings, jobs, server, Label Studio, images)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "ls_al_backend"


def imported_parts(path: Path) -> set[str]:
    """First component under ``ls_al_backend`` of every import in the file, at any depth (function-level too)."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        parts |= {name.split(".")[1] for name in names if name.startswith("ls_al_backend.") and name.count(".") >= 1}
    return parts


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imports_by_part() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        graph.setdefault(part_of(path), set()).update(imported_parts(path) - {part_of(path)})
    return graph


def test_the_server_jobs_backend_chain_has_no_way_back() -> None:
    graph = imports_by_part()
    assert not graph["backend"] & {"jobs", "server", "cli"}, graph["backend"]
    assert not graph["jobs"] & {"server", "cli"}, graph["jobs"]


def test_the_model_package_imports_nothing_of_the_application_layer() -> None:
    graph = imports_by_part()
    application = {"config", "jobs", "server", "cli", "backend", "studio", "images", "projects", "bench", "simulation"}
    assert not graph["model"] & application, graph["model"]
    assert not graph["acquisition"] & application, graph["acquisition"]
    assert not graph["labeling"] & application, graph["labeling"]


def test_the_query_modes_sit_above_the_building_blocks_and_below_the_application() -> None:
    graph = imports_by_part()
    for part in ("acquisition", "labeling", "model"):
        assert "modes" not in graph[part], (part, graph[part])
    application = {"config", "jobs", "server", "cli", "backend", "studio", "images", "projects", "bench", "simulation"}
    assert not graph["modes"] & application, graph["modes"]


def test_the_job_modules_form_no_circle() -> None:
    """``runners`` (the embedded runner) and ``rq_jobs`` (Redis + RQ) share ``contract``; no module of ``jobs/``
    reaches, through the others, back to itself."""
    modules = {path.stem: path for path in (PACKAGE / "jobs").glob("*.py")}
    edges = {}
    for name, path in modules.items():
        edges[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ls_al_backend.jobs."):
                edges[name].add(node.module.rsplit(".", 1)[1])
    for start in modules:
        seen, frontier = set(), set(edges[start])
        while frontier:
            seen |= frontier
            frontier = {target for module in frontier for target in edges.get(module, ())} - seen
        assert start not in seen, f"jobs/{start}.py imports itself back through {sorted(seen)}"
