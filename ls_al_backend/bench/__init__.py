"""Speed benchmarks of the product's own code paths (``ls-al-backend bench``).

Four measurements, each in its own child process (:mod:`ls_al_backend.bench.run`):

* ``mc``: the cost of the server's MC-dropout call as a multiple of one deterministic forward pass, for several
  T and MC resolutions (:func:`~ls_al_backend.bench.model_speed.measure_mc_dropout`);
* ``predict``: ``/predict`` latency per image over HTTP against ``ls-al-backend serve``, per label config
  (:func:`~ls_al_backend.bench.service_speed.measure_predict_latency`);
* ``scoring``: pool-scoring throughput of ``score_job`` on 1 and 2 ``ls-al-backend worker`` processes over
  Redis + RQ, with a Label Studio stand-in (:func:`~ls_al_backend.bench.service_speed.measure_pool_scoring`);
* ``training``: training images per second of ``train()`` (:func:`~ls_al_backend.bench.model_speed.measure_training`).

Results go to ``<out>/<time>-<host>.json`` and ``<out>/README.md`` (:mod:`ls_al_backend.bench.report`).
"""

from ls_al_backend.bench.run import MEASUREMENTS, BenchOptions, quick_run, run_benchmarks

__all__ = ["MEASUREMENTS", "BenchOptions", "quick_run", "run_benchmarks"]
