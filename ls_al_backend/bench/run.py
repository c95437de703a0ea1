"""``ls-al-backend bench``: pick the images, run each measurement in its own process, write JSON and Markdown.

Every measurement runs in a fresh child process (``spawn``), so its peak memory is its own and one measurement's
in-process caches cannot speed up the next. The machine is recorded once per run and attached to
every result, with the load average when the measurement started.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from PIL import Image

from ls_al_backend.bench.report import write_report
from ls_al_backend.config import Settings

MEASUREMENTS = (
    "mc",
    "predict",
    "scoring",
    "training",
    "precision",
    "runtimes",
    "predict_memory",
    "prediction_bytes",
    "scale",
)
#: What a run measures unless ``--only`` says otherwise: all but ``scale``, which needs a Label Studio to load.
DEFAULT_MEASUREMENTS = MEASUREMENTS[:-1]
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: Label configs (files in ``--label-configs``): MC dropout and training use the dense one (CamVid masks are dense
#: labels), pool scoring the superpixel one (the usual active-learning mode); /predict uses every config there.
DENSE_CONFIG = "dense_brush"
SCORING_CONFIG = "superpixel_dominant"
#: Settings recorded with every run (what the measured speed depends on).
RECORDED_SETTINGS = (
    "device",
    "model_arch",
    "model_encoder",
    "encoder_weights",
    "head_dropout",
    "inference_max_side",
    "mc_samples",
    "mc_resolution",
    "acquisition",
    "train_batch_size",
    "train_crop_size",
    "train_learning_rate",
    "train_class_weighting",
    "train_semi_supervised",
    "score_chunk_size",
    "analysis_max_side",
    "inference_batch_size",
    "inference_runtime",
)
#: Environment variables that change speed without being settings; recorded when set.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")

#: ``--quick``: sizes for a smoke run of every code path in about a minute (not a measurement).
QUICK_OPTIONS: dict[str, Any] = {
    "images": 2,
    "samples": (1, 2),
    "mc_images": 2,
    "train_images": 2,
    "train_epochs": 1,
    "train_steps_per_epoch": 1,
    "image_side": 64,
    "precision_size": (64, 64),
    "precision_steps": 1,
    "runtime_size": (64, 64),
    "runtime_steps": 1,
    "memory_sides": (64, 128),
    "memory_uncapped_sides": (128,),
    "size_train_epochs": 1,
}
QUICK_SETTINGS: dict[str, Any] = {
    "mc_samples": 2,
    "train_crop_size": 32,
    "train_batch_size": 2,
    "score_chunk_size": 1,
    "analysis_max_side": 64,
}


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and on how much data (``ls-al-backend bench --help`` describes each option)."""

    data: Path
    out: Path
    images: int = 50
    samples: tuple[int, ...] = (1, 5, 10, 20, 50)
    only: tuple[str, ...] = DEFAULT_MEASUREMENTS
    mc_images: int = 10
    train_images: int = 16
    train_epochs: int = 2
    train_steps_per_epoch: int | None = None
    image_side: int | None = None
    """Shrink the images to this longest side (quick runs); None measures them at their own size."""
    workers: tuple[int, ...] = (1, 2)
    precision_size: tuple[int, int] = (192, 256)
    """Image size (H, W) of the precision comparison: the issue's 256x192 batches of 8."""
    precision_steps: int = 4
    runtime_size: tuple[int, int] = (384, 480)
    """Image size (H, W) of the runtime comparison (``runtimes``): a 480x360 CamVid image as the network sees it."""
    runtime_steps: int = 3
    memory_sides: tuple[int, ...] = (480, 2000, 4000, 8000)
    """Longest sides of the images whose one-prediction peak memory is measured (``predict_memory``)."""
    memory_uncapped_sides: tuple[int, ...] = (4000,)
    """Of those, the sides measured again without ``ANALYSIS_MAX_SIDE``, for comparison."""
    size_train_epochs: int = 20
    """Epochs of the model whose predictions ``prediction_bytes`` measures (on ``train_images`` images)."""
    scale_tasks: int = 10_000
    """Tasks of the project that ``scale`` creates in Label Studio."""
    scale_workers: tuple[int, ...] = (1, 2, 2)
    """Workers of each ``scale`` round (one round per entry)."""
    label_studio_db: Path | None = None
    """Label Studio's SQLite database file, whose growth ``scale`` reports (None: not measured)."""
    redis_url: str = DEFAULT_REDIS_URL
    label_configs: Path = Path("label_configs")
    quick: bool = False

    def validate(self) -> None:
        """Raise ``ValueError`` with a readable reason for an option or data folder the run cannot use."""
        unknown = [name for name in self.only if name not in MEASUREMENTS]
        if unknown or not self.only:
            raise ValueError(f"--only: unknown measurement(s) {unknown}; choose from {', '.join(MEASUREMENTS)}")
        counts = (self.images, self.mc_images, self.train_images, self.train_epochs, self.scale_tasks)
        counts += (*self.samples, *self.workers, *self.scale_workers)
        if min(counts) < 1 or not self.samples or not self.workers or not self.scale_workers:
            raise ValueError(
                "--images, --samples, --workers, --scale-tasks, --scale-workers and the image and epoch counts "
                "must be >= 1"
            )
        if not (self.data / "images").is_dir():
            raise ValueError(f"--data {self.data}: expected a dataset split folder with images/ (and masks/)")
        if "training" in self.only and not (self.data / "masks").is_dir():
            raise ValueError(f"--data {self.data}: no masks/ folder (training labels its images with their masks)")
        found = {path.stem for path in self.label_configs.glob("*.xml")}
        if not {DENSE_CONFIG, SCORING_CONFIG} <= found:
            raise ValueError(
                f"--label-configs {self.label_configs}: needs {DENSE_CONFIG}.xml and {SCORING_CONFIG}.xml "
                "(run from the repository root or pass the folder)"
            )


def quick_run(options: BenchOptions, settings: Settings) -> tuple[BenchOptions, Settings]:
    """``options`` and ``settings`` shrunk to the ``--quick`` sizes."""
    return dataclasses.replace(options, quick=True, **QUICK_OPTIONS), dataclasses.replace(settings, **QUICK_SETTINGS)


def pick_images(folder: Path, count: int, max_side: int | None, work_dir: Path) -> list[Path]:
    """``count`` images of ``folder`` evenly spaced in name order; PNG copies shrunk to ``max_side`` if given."""
    paths = sorted(path for path in folder.resolve().iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) < count:
        raise ValueError(f"{folder} holds {len(paths)} images; this run needs {count} (one more for the warm-up)")
    step = (len(paths) - 1) / (count - 1) if count > 1 else 0
    chosen = [paths[round(index * step)] for index in range(count)]
    if max_side is None:
        return chosen
    work_dir.mkdir(parents=True, exist_ok=True)
    shrunk = []
    for path in chosen:
        image = Image.open(path).convert("RGB")
        image.thumbnail((max_side, max_side), Image.BILINEAR)
        shrunk.append(work_dir / f"{path.stem}.png")
        image.save(shrunk[-1])
    return shrunk


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(settings: Settings) -> dict[str, Any]:
    """CPU, cores, memory, torch version and threads, the device the backend picks and its GPU."""
    import torch

    from ls_al_backend.model.network import select_device

    device = select_device(settings.device)
    return {
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }


def peak_memory(of_children: bool) -> dict[str, Any]:
    """Peak RSS of this process, or of its largest exited child process, and the CUDA peak of this process."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if of_children else resource.RUSAGE_SELF)
    rss_mib = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)  # bytes on macOS, KiB on Linux
    torch = sys.modules.get("torch")  # imported only by the measurements that run the model in this process
    cuda_mib = None
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda_mib = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return {
        "rss_mib": round(rss_mib, 1),
        "of": "the largest server or worker process" if of_children else "the benchmark process (model in process)",
        "cuda_max_allocated_mib": cuda_mib,
    }


def _measure(function: Callable[..., dict[str, Any]], kwargs: dict[str, Any], of_children: bool) -> dict[str, Any]:
    """Runs in the child process: the measurement, then its peak memory."""
    result = function(**kwargs)
    result["peak_memory"] = peak_memory(of_children)
    return result


def run_in_child(function: Callable[..., dict[str, Any]], kwargs: dict[str, Any], of_children: bool) -> dict[str, Any]:
    """``function(**kwargs)`` in a fresh spawned process, with the peak memory it (or its children) used."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as executor:
        return executor.submit(_measure, function, kwargs, of_children).result()


def run_benchmarks(
    options: BenchOptions, settings: Settings, command: str, log: Callable[[str], None] = print
) -> tuple[dict[str, Any], Path]:
    """Run the chosen measurements; write ``<out>/<time>-<host>.json`` and ``<out>/README.md``.

    Returns the report and the JSON path. A measurement that fails is recorded as ``{"error": ...}`` and the others
    still run.
    """
    options.validate()
    # Imported here, not at the top: the predict and scoring child processes import this package and should not
    # load torch (model_speed does).
    from ls_al_backend.bench import model_speed, prediction_size, runtime_speed, scale, service_speed

    configs = {path.stem: path.read_text() for path in sorted(options.label_configs.glob("*.xml"))}
    started_at = datetime.now(UTC)
    machine = machine_info(settings)
    mc_resolutions = tuple(dict.fromkeys((settings.mc_resolution, 1.0)))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ls-al-bench-") as work_dir:
        needed = 1 + max(options.images, options.mc_images)
        warmup, *images = pick_images(options.data / "images", needed, options.image_side, Path(work_dir) / "images")
        # every layer drawn, the untrained v0's too: the benchmark measures the heaviest prediction
        local_roots = (str(warmup.parent.resolve()),)
        product_settings = settings  # the layers as configured: what a project's Label Studio really stores
        settings = dataclasses.replace(
            settings, local_image_roots=local_roots, class_masks="on", uncertainty_overlay="on"
        )
        plan = {
            "mc": (
                model_speed.measure_mc_dropout,
                {
                    "label_config": configs[DENSE_CONFIG],
                    "images": images[: options.mc_images],
                    "warmup": warmup,
                    "samples": options.samples,
                    "mc_resolutions": mc_resolutions,
                },
                False,
            ),
            "predict": (
                service_speed.measure_predict_latency,
                {"label_configs": configs, "images": images[: options.images], "warmup": warmup},
                True,
            ),
            "scoring": (
                service_speed.measure_pool_scoring,
                {
                    "label_config": configs[SCORING_CONFIG],
                    "label_config_name": SCORING_CONFIG,
                    "images": images[: options.images],
                    "worker_counts": options.workers,
                    "redis_url": options.redis_url,
                },
                True,
            ),
            "training": (
                model_speed.measure_training,
                {
                    "label_config": configs[DENSE_CONFIG],
                    "split": options.data,
                    "images": options.train_images,
                    "epochs": options.train_epochs,
                    "steps_per_epoch": options.train_steps_per_epoch,
                    "image_side": options.image_side,
                },
                False,
            ),
            "predict_memory": (
                model_speed.measure_predict_memory,
                {
                    "label_config": configs[SCORING_CONFIG],
                    "image": warmup,
                    "sides": options.memory_sides,
                    "uncapped_sides": options.memory_uncapped_sides,
                },
                False,
            ),
            "prediction_bytes": (
                prediction_size.measure_prediction_bytes,
                {
                    "label_configs": configs,
                    "dense_config": DENSE_CONFIG,
                    "split": options.data,
                    "train_images": options.train_images,
                    "epochs": options.size_train_epochs,
                    "images": images[: options.mc_images],
                    "image_side": options.image_side,
                },
                False,
            ),
            "scale": (
                scale.measure_scale,
                {
                    "settings": product_settings,
                    "label_config": configs[SCORING_CONFIG],
                    "label_config_name": SCORING_CONFIG,
                    "images": images[: options.images],
                    "tasks": options.scale_tasks,
                    "worker_counts": options.scale_workers,
                    "redis_url": options.redis_url,
                    "database": options.label_studio_db,
                },
                True,
            ),
            "precision": (
                model_speed.measure_precision,
                {"split": options.data, "size": options.precision_size, "steps": options.precision_steps},
                False,
            ),
            "runtimes": (
                runtime_speed.measure_runtimes,
                {"split": options.data, "size": options.runtime_size, "steps": options.runtime_steps},
                False,
            ),
        }
        for name in options.only:
            function, kwargs, of_children = plan[name]
            log(f"bench: {name} ...")
            load_average = [round(value, 2) for value in os.getloadavg()]
            started = time.monotonic()
            try:
                result = run_in_child(function, {"settings": settings} | kwargs, of_children)
            except Exception as error:  # recorded; the other measurements still run
                trace = "".join(traceback.format_exception(error))  # the child's traceback is in its cause
                result = {"error": f"{type(error).__name__}: {error}", "traceback": trace}
            result.update(
                wall_s=round(time.monotonic() - started, 1), load_average_at_start=load_average, machine=machine
            )
            results[name] = result
            log(f"bench: {name} done in {result['wall_s']} s" + (f": {result['error']}" if "error" in result else ""))
    report = {
        "command": command,
        "environment": {name: os.environ[name] for name in _environment_names() if name in os.environ},
        "started_at": started_at.isoformat(timespec="seconds"),
        "quick": options.quick,
        "data": str(options.data.resolve()),
        "image_side": options.image_side,
        "warmup_image": warmup.name,
        "images": [image.name for image in images],
        "machine": machine,
        "settings": {name.upper(): getattr(settings, name) for name in RECORDED_SETTINGS},
        "results": results,
    }
    path = write_report(options.out, report)
    measured = results.get("scale", {})
    if "rounds" in measured:
        summary = scale.scale_summary(measured, machine["usable_cores"]) | {"results_file": path.name}
        (options.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return report, path


def _environment_names() -> list[str]:
    return [name.upper() for name in RECORDED_SETTINGS] + list(THREAD_VARIABLES)
