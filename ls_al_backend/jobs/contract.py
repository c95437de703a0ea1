"""What every job runner promises, and the pool's cut into scoring jobs: shared by the embedded runner
(``runners.py``) and Redis + RQ (``rq_jobs.py``), which import this module and never each other's internals."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from prometheus_client.registry import Collector

MAX_JOBS_LISTED = 100


class JobRunner(ABC):
    """Accepts training requests and lists jobs with their progress."""

    @abstractmethod
    def request_training(self, project_id: str, label_config_xml: str, reason: str) -> dict[str, Any]:
        """Queue (or fold into the pending) training of a project; returns ``{"job_id", "coalesced"}``."""

    @abstractmethod
    def jobs(self) -> list[dict[str, Any]]:
        """Recent jobs, newest first: id, kind, project, status, meta (stage, epoch, loss, ...), error."""

    def metric_collectors(self) -> list[Collector]:
        """Prometheus collectors read at each scrape of ``/metrics`` (e.g. queue lengths); none by default."""
        return []


#: ``SCORE_CHUNK_SIZE=0``: a round's pool goes out in about this many scoring jobs, each of a size within the limits.
#: Each job writes its predictions in one Label Studio import, which costs 1-9 s whatever it carries in a
#: 10,000-task project (benchmarks/scale/write-10k/), so large pools want few, large chunks; small pools want
#: chunks small enough for several workers to share.
AUTO_CHUNKS_PER_ROUND = 20
AUTO_CHUNK_SIZE_LIMITS = (100, 500)


def scoring_chunk_size(tasks: int, chunk_size: int) -> int:
    """Tasks per scoring job for a pool of ``tasks``: ``chunk_size`` (``SCORE_CHUNK_SIZE``), or, when it is 0, the
    size that cuts the pool into about ``AUTO_CHUNKS_PER_ROUND`` jobs, within ``AUTO_CHUNK_SIZE_LIMITS``."""
    if chunk_size:
        return chunk_size
    smallest, largest = AUTO_CHUNK_SIZE_LIMITS
    return min(max(-(-tasks // AUTO_CHUNKS_PER_ROUND), smallest), largest)


def scoring_chunks(task_ids: list[int], chunk_size: int) -> list[list[int]]:
    """``task_ids`` in consecutive slices of :func:`scoring_chunk_size` tasks (the last one shorter), one scoring
    job each."""
    size = scoring_chunk_size(len(task_ids), chunk_size)
    return [task_ids[start : start + size] for start in range(0, len(task_ids), size)]
