"""Speed of the network's deterministic part (encoder + decoder) on each serving runtime (``INFERENCE_RUNTIME``),
beside the bare torch network, on one batch of real images."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from ls_al_backend.config import Settings
from ls_al_backend.model.inference import to_tensor
from ls_al_backend.model.network import NetworkSpec, SegmentationNet, build_network, fold_batchnorm, select_device
from ls_al_backend.model.precision import FLOAT32, Precision, autocast, resolve_precision, to_channels_last
from ls_al_backend.model.runtimes import OnnxRuntimeTrunk, ServingRuntime
from ls_al_backend.simulation import load_split


def measure_runtimes(
    settings: Settings, split: Path, batch_size: int = 8, size: tuple[int, int] = (384, 480), steps: int = 3
) -> dict[str, Any]:
    """Images/s of ``net.features(batch)`` (encoder + decoder; the MC-dropout head is the same on every runtime):
    the bare network, torch with BatchNorm folded (``INFERENCE_RUNTIME=torch``) and, on a CPU, ONNX Runtime, with
    their ratios to both torch rows and what ``INFERENCE_RUNTIME=auto`` picks here. After one warm-up batch each,
    the variants take turns for ``steps`` rounds (the fastest batch of each counts), so the ratios hold on a machine
    whose load changes."""
    device = select_device(settings.device)
    precision = resolve_precision(device, settings.precision)
    examples = load_split(split, resolution=max(size), limit=batch_size)
    images = torch.stack([to_tensor(example.image) for example in examples])
    images = to_channels_last(F.interpolate(images, size=size, mode="bilinear", align_corners=False).to(device))
    spec = NetworkSpec(settings.model_arch, settings.model_encoder, 11, settings.head_dropout, settings.encoder_weights)
    net = build_network(spec, seed=0).to(device)
    variants: list[tuple[str, SegmentationNet, Precision]] = [
        ("torch, BatchNorm not folded (the bare network)", net, precision),
        ("torch (INFERENCE_RUNTIME=torch)", fold_batchnorm(net), precision),
    ]
    prepare_s, auto = None, None
    with tempfile.TemporaryDirectory(prefix="ls-al-bench-runtimes-") as cache_dir:
        if device.type == "cpu":
            started = time.perf_counter()
            served = ServingRuntime("onnxruntime", Path(cache_dir)).prepare(net)
            prepare_s = round(time.perf_counter() - started, 2)  # the export, then this version's session
            if isinstance(served.encoder, OnnxRuntimeTrunk):
                variants.append(("onnxruntime (INFERENCE_RUNTIME=onnxruntime)", served, FLOAT32))
            auto = ServingRuntime("auto", Path(cache_dir), precision)
            auto.prepare(net)
        times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        with torch.no_grad():
            for round_index in range(steps + 1):  # round 0 warms up
                for name, model, model_precision in variants:
                    with autocast(device, model_precision):
                        started = time.perf_counter()
                        model.features(images)
                        if device.type == "cuda":
                            torch.cuda.synchronize(device)
                        if round_index > 0:
                            times[name].append(time.perf_counter() - started)
    rows = [{"runtime": name, "images_per_s": round(len(examples) / min(times[name]), 2)} for name in times]
    bare, folded = rows[0]["images_per_s"], rows[1]["images_per_s"]
    for row in rows:
        row["x_bare"] = round(row["images_per_s"] / bare, 2)
        row["x_torch"] = round(row["images_per_s"] / folded, 2)
    return {
        "what": "net.features(batch): encoder + decoder, the deterministic part that runs once per image",
        "batch_size": len(examples),
        "image_size": list(size),
        "device": str(device),
        "precision": precision.name,
        "threads": torch.get_num_threads(),
        "onnxruntime_first_prepare_s": prepare_s,
        "auto_picks": None if auto is None else auto.runtime(net),
        "auto_probe_s": None if auto is None else {name: round(s, 4) for name, s in auto.measured.items()},
        "rows": rows,
    }
