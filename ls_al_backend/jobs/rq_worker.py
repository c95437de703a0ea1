"""``ls-al-backend worker``: an RQ worker bound to the training queue, the scoring queue or both, that counts its
jobs for Prometheus and, with a metrics port, serves them.

RQ runs every job in a forked "work horse" process. A worker with a metrics port therefore counts in
prometheus-client's multiprocess mode (``cli.py`` points ``PROMETHEUS_MULTIPROC_DIR`` at a folder of its own before
anything imports prometheus-client): what a job records (images scored, a training round's seconds, image fetch
failures) lands in files that this process adds up at every scrape, and the files of an ended job process are
folded into one archive file so that the folder does not grow by a file per job. The job counts (started,
finished, failed) are kept by this parent process, which also sees a job process killed by a signal.
"""

from __future__ import annotations

import logging

from prometheus_client import start_http_server
from rq import Queue, Worker
from rq.exceptions import InvalidJobOperation
from rq.job import Job, JobStatus

from ls_al_backend import metrics
from ls_al_backend.config import Settings
from ls_al_backend.jobs.queue_metrics import QueueCollector
from ls_al_backend.jobs.rq_jobs import QUEUE_ROLES, connect, queues_for

log = logging.getLogger(__name__)


class MeteredWorker(Worker):
    """RQ's forking worker that counts each job's start and end by kind, in this process, and stops promptly."""

    #: Seconds the thread reading RQ's commands (stop a job, ...) waits for one. A warm shutdown (SIGTERM) joins
    #: that thread (redis-py's ``PubSubWorkerThread.stop``): RQ's own 60 s made a stopping worker hang up to a
    #: minute, past e.g. Docker's 10 s grace period and its SIGKILL.
    COMMAND_WAIT_S = 1.0

    def subscribe(self) -> None:
        """RQ's ``subscribe``, with :attr:`COMMAND_WAIT_S` instead of 60 s."""
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=self.COMMAND_WAIT_S, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def execute_job(self, job: Job, queue: Queue) -> None:
        kind = job.meta.get("kind", "unknown")
        metrics.count_job(kind, "started")
        self._last_horse_pid = 0
        try:
            super().execute_job(job, queue)
        finally:
            try:
                metrics.count_job(kind, "finished" if _status(job) == JobStatus.FINISHED else "failed")
                if self._last_horse_pid and metrics.multiprocess_mode():
                    metrics.fold_ended_process(self._last_horse_pid)
            except Exception:  # bookkeeping must never stop the worker
                log.exception("worker metrics: job %s could not be counted", job.id)

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        super().fork_work_horse(job, queue)  # returns in this process only; the job process exits inside it
        self._last_horse_pid = self._horse_pid  # monitor_work_horse resets _horse_pid to 0 when the job ends


def _status(job: Job) -> JobStatus | None:
    try:
        return job.get_status(refresh=True)
    except InvalidJobOperation:  # the job and its result are already gone (result TTL 0)
        return None


def run_worker(
    settings: Settings, roles: tuple[str, ...] = QUEUE_ROLES, burst: bool = False, metrics_port: int | None = None
) -> None:
    """Process jobs from the queues of ``roles`` (``"training"``, ``"scoring"``; served in that order) until
    stopped (or, with ``burst``, until they are empty); with ``metrics_port``, serve Prometheus metrics on it."""
    import ls_al_backend.jobs.pipeline  # noqa: F401  (torch, smp: imported once, inherited by every forked job)

    connection = connect(settings)
    queues = queues_for(settings, connection, roles)
    if metrics_port is not None:
        if not metrics.multiprocess_mode():
            raise RuntimeError(
                "a worker's metrics need prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR set before "
                "prometheus-client is imported; `ls-al-backend worker --metrics-port` does that)"
            )
        registry = metrics.scrape_registry([QueueCollector(connection, [queue.name for queue in queues])])
        start_http_server(metrics_port, registry=registry)
        log.info("metrics on port %d", metrics_port)
    log.info("worker on queue(s) %s", ", ".join(queue.name for queue in queues))
    MeteredWorker(queues, connection=connection).work(burst=burst, with_scheduler=False)
