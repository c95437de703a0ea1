"""Measurements inside this process: MC-dropout cost and training speed, with the code the server and workers run.

The network comes from the server's model cache (:class:`~ls_al_backend.backend.Backend`) or from the training
pipeline (:meth:`~ls_al_backend.jobs.pipeline.Pipeline.initial_network`), so it is exactly the network served or
trained (untrained head, version 0: timings do not depend on the weights).
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ls_al_backend.backend import Backend
from ls_al_backend.config import Settings
from ls_al_backend.jobs.pipeline import Pipeline, train_config_from
from ls_al_backend.labeling.annotations import LabelTarget
from ls_al_backend.model.batches import TrainingSample
from ls_al_backend.model.inference import mc_dropout, pad_to_multiple, to_tensor, working_size
from ls_al_backend.model.precision import resolve_precision
from ls_al_backend.model.training import stage_batches_per_epoch, train
from ls_al_backend.modes import parse_label_config
from ls_al_backend.simulation import load_split

#: ``load_split`` resolution that never shrinks an image.
FULL_SIZE = 1_000_000


def dense_samples(split: Path, images: int, image_side: int | None = None) -> list[TrainingSample]:
    """``images`` evenly spaced images of ``split`` (shrunk to ``image_side`` if given) labelled densely by their
    ground-truth masks (void ignored)."""
    examples = load_split(split, resolution=image_side or FULL_SIZE, limit=images)
    return [TrainingSample(index, example.image, LabelTarget(example.gt)) for index, example in enumerate(examples)]


#: Samples of the warm-up MC-dropout call: one chunk of 5 and one of 1, the chunk shapes every T here uses.
WARMUP_SAMPLES = 6


def _timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """A function that runs its argument once and returns the wall seconds (waiting for the GPU on CUDA)."""

    def seconds(function: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    return seconds


def measure_mc_dropout(
    settings: Settings,
    label_config: str,
    images: Sequence[Path],
    warmup: Path,
    samples: Sequence[int],
    mc_resolutions: Sequence[float],
    repeats: int = 3,
) -> dict[str, Any]:
    """Cost of the server's ``mc_dropout`` call as a multiple of one deterministic forward pass.

    Per image: the deterministic pass (``net(batch)`` on the image as the server feeds it: longest side at most
    ``INFERENCE_MAX_SIDE``, padded to the output stride) timed ``repeats`` times (median), then one
    ``mc_dropout`` call per (MC resolution, T), which also includes preprocessing and the full-resolution class
    probabilities. The ratio is the median over images of ``mc seconds / deterministic seconds`` of that image.
    """
    with tempfile.TemporaryDirectory(prefix="ls-al-bench-") as data_dir:
        backend = Backend(dataclasses.replace(settings, data_dir=Path(data_dir), model_dir=""))
        net, _ = backend.cache.get("bench", parse_label_config(label_config).class_names)
        device = backend.device
        seconds = _timer(device)
        max_side = settings.inference_max_side

        def network_input(image: np.ndarray) -> torch.Tensor:
            """The batch the network sees for ``image`` (what ``mc_dropout`` builds before its one pass)."""
            height, width = image.shape[:2]
            size = working_size(height, width, max_side)
            batch = to_tensor(image).unsqueeze(0).to(device)
            if size != (height, width):
                batch = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
            return pad_to_multiple(batch, net.output_stride)

        @torch.no_grad()
        def deterministic_seconds(batch: torch.Tensor) -> float:
            return seconds(lambda: net(batch))

        def mc_seconds(image: np.ndarray, count: int, scale: float) -> float:
            return seconds(lambda: mc_dropout(net, image, count, max_side=max_side, mc_scale=scale))

        first = backend.images.load(str(warmup))
        deterministic_seconds(network_input(first))
        for scale in mc_resolutions:
            mc_seconds(first, WARMUP_SAMPLES, scale)

        deterministic_s: list[float] = []
        mc_s: dict[tuple[float, int], list[float]] = {(scale, t): [] for scale in mc_resolutions for t in samples}
        for path in images:
            image = backend.images.load(str(path))
            batch = network_input(image)
            deterministic_s.append(statistics.median([deterministic_seconds(batch) for _ in range(repeats)]))
            for scale, count in mc_s:
                mc_s[scale, count].append(mc_seconds(image, count, scale))
    rows = [
        {
            "mc_resolution": scale,
            "samples": count,
            "median_s": round(statistics.median(times), 4),
            "ratio": round(statistics.median([t / d for t, d in zip(times, deterministic_s, strict=True)]), 3),
        }
        for (scale, count), times in mc_s.items()
    ]
    return {
        "what": "mc_dropout(net, image, T, INFERENCE_MAX_SIDE, MC_RESOLUTION) / one deterministic net(batch)",
        "images": len(images),
        "image_size": list(image.shape[:2]),
        "network_input": list(batch.shape[-2:]),
        "device": str(device),
        "deterministic_median_s": round(statistics.median(deterministic_s), 4),
        "rows": rows,
    }


def measure_training(
    settings: Settings,
    label_config: str,
    split: Path,
    images: int,
    epochs: int,
    steps_per_epoch: int | None = None,
    image_side: int | None = None,
) -> dict[str, Any]:
    """Training images per second of the workers' ``train`` with the ``TRAIN_*`` settings (crop, batch size).

    ``images`` evenly spaced images of ``split`` (shrunk to ``image_side`` if given) are labelled densely by their
    ground-truth masks (void ignored) and trained for ``epochs`` epochs without a hold-out (no validation passes).
    With ``TRAIN_SEMI_SUPERVISED=mean_teacher`` the same images also serve as the unlabelled ones.
    """
    config = parse_label_config(label_config)
    samples = dense_samples(split, images, image_side)
    train_config = train_config_from(
        settings, epochs=epochs, val_fraction=0.0, steps_per_epoch=steps_per_epoch, min_steps=0
    )
    epoch_seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ls-al-bench-") as data_dir:
        pipeline = Pipeline(dataclasses.replace(settings, data_dir=Path(data_dir), model_dir=""))
        net = pipeline.initial_network("bench", config)
        device = pipeline.backend.device
        last = time.perf_counter()

        def on_epoch(update: dict[str, Any]) -> None:
            nonlocal last
            now = time.perf_counter()
            epoch_seconds.append(now - last)
            last = now

        unlabelled = [sample.image for sample in samples]  # used only with TRAIN_SEMI_SUPERVISED=mean_teacher
        train(
            net,
            samples,
            train_config,
            device,
            progress=on_epoch,
            partial_labels=config.handler.partial_labels,
            unlabelled=unlabelled,
        )
    per_epoch = stage_batches_per_epoch(len(samples), train_config, epochs) * train_config.batch_size
    return {
        "what": "train(net, samples, train_config_from(settings), device) on CamVid masks as dense labels",
        "images": len(samples),
        "image_size": list(samples[0].image.shape[:2]),
        "crop_size": train_config.crop_size,
        "batch_size": train_config.batch_size,
        "epochs": len(epoch_seconds),
        "images_per_epoch": per_epoch,
        "device": str(device),
        "precision": resolve_precision(device, train_config.precision).name,
        "seconds_per_epoch": [round(seconds, 3) for seconds in epoch_seconds],
        "images_per_s": round(per_epoch * len(epoch_seconds) / sum(epoch_seconds), 3),
    }


#: ``measure_precision`` variants: name, memory layout channels-last, precision preference.
PRECISION_VARIANTS = (
    ("fp32", False, "fp32"),
    ("fp32 + channels_last", True, "fp32"),
    ("auto + channels_last (what the backend runs)", True, "auto"),
    ("bf16 + channels_last (forced)", True, "bf16"),
)


def measure_precision(
    settings: Settings, split: Path, batch_size: int = 8, size: tuple[int, int] = (192, 256), steps: int = 4
) -> dict[str, Any]:
    """Training and inference images/s of the bare network (one batch of real images, ``size`` = H, W) in fp32,
    fp32 channels-last, the precision the backend picks (``PRECISION=auto``) and forced bfloat16, each with the
    ratio to plain fp32. After one warm-up step each, the variants take turns for ``steps`` rounds (the fastest
    step of each counts), so the ratios hold on a machine whose load changes."""
    from ls_al_backend.model.network import NetworkSpec, build_network, select_device
    from ls_al_backend.model.precision import autocast, cpu_has_native_bf16, to_channels_last

    device = select_device(settings.device)
    seconds = _timer(device)
    examples = load_split(split, resolution=max(size), limit=batch_size)
    images = torch.stack([to_tensor(example.image) for example in examples])
    images = F.interpolate(images, size=size, mode="bilinear", align_corners=False).to(device)
    labels = torch.randint(0, 11, (len(examples), *size), device=device)
    spec = NetworkSpec(settings.model_arch, settings.model_encoder, 11, settings.head_dropout, settings.encoder_weights)
    variants = []
    for name, channels_last, preference in PRECISION_VARIANTS:
        precision = resolve_precision(device, preference)
        net = build_network(spec, seed=0).to(device)
        net = net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        batch = to_channels_last(images) if channels_last else images.contiguous()
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)

        def train_step(net=net, batch=batch, optimizer=optimizer, precision=precision) -> None:
            net.train()
            with autocast(device, precision):
                logits = net(batch)
            loss = F.cross_entropy(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        @torch.no_grad()
        def infer_step(net=net, batch=batch, precision=precision) -> None:
            net.eval()
            with autocast(device, precision):
                net(batch)

        train_step(), infer_step()  # warm-up
        variants.append((name, channels_last, precision, train_step, infer_step, [], []))
    for _ in range(steps):  # round-robin, so a change of machine load hits every variant alike
        for *_, train_step, infer_step, train_times, infer_times in variants:
            train_times.append(seconds(train_step))
            infer_times.append(seconds(infer_step))
    rows = [
        {
            "variant": name,
            "precision": precision.name,
            "channels_last": channels_last,
            "train_images_per_s": round(len(examples) / min(train_times), 2),
            "inference_images_per_s": round(len(examples) / min(infer_times), 2),
        }
        for name, channels_last, precision, _, _, train_times, infer_times in variants
    ]
    base = rows[0]
    for row in rows:
        row["train_speedup"] = round(row["train_images_per_s"] / base["train_images_per_s"], 2)
        row["inference_speedup"] = round(row["inference_images_per_s"] / base["inference_images_per_s"], 2)
    return {
        "what": "the bare network: one training step (forward, loss, backward, AdamW) and one inference forward",
        "batch_size": len(examples),
        "image_size": list(size),
        "device": str(device),
        "native_bf16": cpu_has_native_bf16(),
        "auto_precision": resolve_precision(device, "auto").reason,
        "rows": rows,
    }


def _predict_peak(settings: Settings, label_config: str, image: Path) -> dict[str, Any]:
    """In a fresh process: one ``Backend.predict`` of ``image``; its seconds and the process's peak RSS."""
    import resource

    backend = Backend(settings)
    config = parse_label_config(label_config)
    backend.cache.get("_adhoc", config.class_names)  # load the model before the baseline is read
    baseline_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    (prediction,) = backend.predict([{"id": 1, "data": {config.image_key: str(image)}}], config, None)
    seconds = time.perf_counter() - started
    if prediction.failed:
        raise RuntimeError(f"no prediction for {image.name} (see the log)")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": round(seconds, 2), "baseline_rss_mib": round(baseline_mib), "peak_rss_mib": round(peak_mib)}


def measure_predict_memory(
    settings: Settings, label_config: str, image: Path, sides: Sequence[int], uncapped_sides: Sequence[int]
) -> dict[str, Any]:
    """Peak memory of one prediction as the image grows: ``image`` scaled to each longest side in ``sides``, each
    predicted in its own fresh process with ``ANALYSIS_MAX_SIDE`` as set, and again with no cap for
    ``uncapped_sides`` (for comparison). The baseline is the process with the model loaded, before the prediction."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from PIL import Image

    rows = []
    with tempfile.TemporaryDirectory(prefix="ls-al-bench-") as work_dir:
        source = Image.open(image).convert("RGB")
        runs = [(side, settings.analysis_max_side) for side in sides]
        runs += [(side, max(side, settings.analysis_max_side)) for side in uncapped_sides]
        for side, analysis_max_side in runs:
            width, height = side, round(side * source.height / source.width)
            path = Path(work_dir) / f"scene-{side}.png"
            source.resize((width, height), Image.Resampling.BICUBIC).save(path)
            run_settings = dataclasses.replace(
                settings, analysis_max_side=analysis_max_side, local_image_roots=(work_dir,)
            )
            with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as executor:
                measured = executor.submit(_predict_peak, run_settings, label_config, path).result()
            rows.append(
                {
                    "image_size": [height, width],
                    "megapixels": round(width * height / 1e6, 1),
                    "analysis_max_side": analysis_max_side,
                    **measured,
                    "prediction_rss_mib": measured["peak_rss_mib"] - measured["baseline_rss_mib"],
                }
            )
    return {
        "what": "one Backend.predict (one task) per fresh process; RSS above the loaded model is the prediction's own",
        "rows": rows,
    }
