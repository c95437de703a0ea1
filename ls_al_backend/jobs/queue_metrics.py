"""Queue lengths and RQ registry sizes, read from Redis at scrape time (``/metrics`` with ``REDIS_URL``, and a
worker's metrics port)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

log = logging.getLogger(__name__)


class QueueCollector(Collector):
    """``ls_al_queue_length{queue}`` (jobs waiting), ``ls_al_queue_jobs{queue, state}`` (RQ's registries: started,
    deferred, scheduled, and the finished and failed jobs whose results are still kept) and ``ls_al_redis_up``."""

    def __init__(self, connection: Redis, queue_names: list[str]):
        self.connection = connection
        self.queue_names = queue_names

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("ls_al_redis_up", "1 if the queues' Redis answered this scrape, else 0.")
        length = GaugeMetricFamily("ls_al_queue_length", "Jobs waiting in the queue.", labels=["queue"])
        jobs = GaugeMetricFamily(
            "ls_al_queue_jobs",
            "Jobs in the queue's RQ registries, by state (finished and failed: those whose results are still kept).",
            labels=["queue", "state"],
        )
        try:
            for name in self.queue_names:
                queue = Queue(name, connection=self.connection)
                length.add_metric([name], queue.count)
                registries = {
                    "started": queue.started_job_registry,
                    "deferred": queue.deferred_job_registry,
                    "scheduled": queue.scheduled_job_registry,
                    "finished": queue.finished_job_registry,
                    "failed": queue.failed_job_registry,
                }
                for state, registry in registries.items():
                    jobs.add_metric([name, state], registry.get_job_count(cleanup=False))  # a scrape only reads
        except RedisError as error:
            log.warning("queue metrics: Redis did not answer: %r", error)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield from (up, length, jobs)
