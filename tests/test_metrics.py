"""Metrics across processes: what forked job processes count reaches the parent's exposition, and folding an ended
process keeps the values while its files go (prometheus-client's multiprocess mode, in a real child process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ls_al_backend import metrics

#: Runs in a fresh interpreter with PROMETHEUS_MULTIPROC_DIR set: two forked "jobs" count, each is folded after it
#: ends; prints the exposition and the folder's files after each step.
SCRIPT = """
import json, os, sys
from ls_al_backend import metrics

def job():
    pid = os.fork()
    if pid == 0:
        metrics.count_image_failure("network")
        metrics.count_image_failure("network")
        metrics.observe_training_round(12.0)
        metrics.set_model_version("7", 3)
        os._exit(0)
    os.waitpid(pid, 0)
    return pid

def state():
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    return {"text": metrics.exposition()[0].decode(), "files": sorted(os.listdir(folder))}

metrics.count_job("score", "started")
steps = {}
first = job()
steps["ended"] = state()
metrics.fold_ended_process(first)
steps["folded"] = state()
second = job()
metrics.fold_ended_process(second)
steps["second"] = state()
steps["pids"] = [first, second]
print(json.dumps(steps))
"""


def values(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_forked_processes_count_into_the_parent_and_folding_keeps_their_values_in_an_archive(tmp_path: Path) -> None:
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=environment, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    steps = json.loads(run.stdout)
    first, second = steps["pids"]
    failures = ("ls_al_image_fetch_failures_total", frozenset({"cause": "network"}.items()))
    rounds = ("ls_al_training_round_duration_seconds_count", frozenset())
    version = ("ls_al_model_version_served", frozenset({"project": "7"}.items()))
    started = ("ls_al_jobs_total", frozenset({"kind": "score", "state": "started"}.items()))

    ended = values(steps["ended"]["text"])
    assert (ended[failures], ended[rounds], ended[version], ended[started]) == (2, 1, 3, 1)
    assert f"counter_{first}.db" in steps["ended"]["files"]

    folded = values(steps["folded"]["text"])
    assert (folded[failures], folded[rounds], folded[started]) == (2, 1, 1), "the ended job's counts are kept"
    assert version not in folded, "an ended process's live gauge is dropped"
    assert not [name for name in steps["folded"]["files"] if name.endswith(f"_{first}.db")]

    second_state = values(steps["second"]["text"])
    assert (second_state[failures], second_state[rounds]) == (4, 2), "the archive adds up every ended job"
    assert second_state[("ls_al_training_round_duration_seconds_sum", frozenset())] == 24.0
    assert not [name for name in steps["second"]["files"] if name.endswith((f"_{first}.db", f"_{second}.db"))]
    assert {"counter_archive.db", "histogram_archive.db"} <= set(steps["second"]["files"])


def test_outside_multiprocess_mode_the_exposition_is_this_process_registry() -> None:
    assert not metrics.multiprocess_mode()
    before = values(metrics.exposition()[0].decode())
    metrics.observe_scoring(images=5, seconds=2.5)
    after = values(metrics.exposition()[0].decode())
    assert after[("ls_al_scored_images_total", frozenset())] - before[("ls_al_scored_images_total", frozenset())] == 5
    assert (
        after[("ls_al_scoring_seconds_total", frozenset())] - before[("ls_al_scoring_seconds_total", frozenset())]
        == 2.5
    )
