"""Serving runtimes: ONNX Runtime gives torch's features on CamVid images, one exported graph serves every version of
a structure with that version's own weights, ``auto`` serves what it measured faster, and the real predict path
proposes the same regions with the same scores on either runtime."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from ls_al_backend.backend import Backend
from ls_al_backend.config import Settings
from ls_al_backend.model import runtimes
from ls_al_backend.model.inference import to_tensor
from ls_al_backend.model.network import NetworkSpec, SegmentationNet, build_network
from ls_al_backend.model.runtimes import OnnxRuntimeTrunk, ServingRuntime
from ls_al_backend.modes import parse_label_config
from tests.conftest import REPO_ROOT, camvid_root

SPEC = NetworkSpec("Unet", "timm-tf_efficientnet_lite0", num_classes=4, head_dropout=0.25)


def trained_like(seed: int, spec: NetworkSpec = SPEC) -> SegmentationNet:
    """The ImageNet encoder (its real BatchNorm statistics) and a decoder whose BatchNorms moved off 0 / 1."""
    net = build_network(spec, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    for module in net.decoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
    return net


def camvid_images(count: int, size: tuple[int, int]) -> torch.Tensor:
    """The first ``count`` CamVid validation images resized to ``size`` (width, height), normalised, channels last."""
    paths = sorted((camvid_root() / "val" / "images").glob("*.jpg"))[:count]
    images = [np.asarray(Image.open(path).convert("RGB").resize(size, Image.BILINEAR)) for path in paths]
    return torch.stack([to_tensor(image) for image in images]).contiguous(memory_format=torch.channels_last)


def max_relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max()) / float(expected.abs().max())


@pytest.fixture
def fresh_process(monkeypatch):
    """No ``auto`` choice made yet in this process, and the graphs exported so far in a copy that the test may
    change or clear (both are kept per process)."""
    monkeypatch.setattr(runtimes, "_graphs", dict(runtimes._graphs))
    monkeypatch.setattr(runtimes, "_auto_choices", {})


def test_onnxruntime_gives_torch_features_on_camvid_images_for_each_version(tmp_path, fresh_process) -> None:
    runtimes._graphs.clear()  # exported here, into tmp_path
    runtime = ServingRuntime("onnxruntime", tmp_path)
    images = camvid_images(2, (160, 128))  # not the export probe's size: height and width are dynamic
    for seed in (0, 1):  # two versions of one structure: one graph, each with its own weights
        net = trained_like(seed)
        served = runtime.prepare(net, "3", seed + 1)
        assert isinstance(served.encoder, OnnxRuntimeTrunk) and runtime.runtime(net) == "onnxruntime"
        with torch.no_grad():
            expected, actual = net.features(images), served.features(images)
            logits = net.head(expected, (128, 160)), served.head(actual, (128, 160))
        assert actual.shape == expected.shape == (2, 16, 128, 160)
        assert max_relative_difference(actual, expected) < 3e-5, f"version {seed + 1}: float rounding only"
        assert torch.allclose(logits[1], logits[0], atol=1e-4, rtol=1e-4)
        assert torch.equal(served.classifier.weight, net.classifier.weight), "the head stays the version's, in torch"
    assert len(list(tmp_path.glob("*.onnx"))) == 1, "one graph for the structure, not one per version"


def test_a_damaged_cached_graph_is_exported_again(tmp_path, fresh_process, caplog) -> None:
    net = trained_like(0)
    runtimes._graphs.clear()  # exported here, into tmp_path
    ServingRuntime("onnxruntime", tmp_path).prepare(net)
    (graph,) = tmp_path.glob("*.onnx")
    graph.write_bytes(b"not a graph")
    runtimes._graphs.clear()  # as in a new process
    served = ServingRuntime("onnxruntime", tmp_path).prepare(net)
    assert isinstance(served.encoder, OnnxRuntimeTrunk) and "unreadable" in caplog.text
    assert graph.stat().st_size > 1_000_000


def test_a_graph_that_does_not_fit_the_network_falls_back_to_torch_with_a_warning(
    tmp_path, fresh_process, caplog
) -> None:
    net = trained_like(0)
    runtime = ServingRuntime("onnxruntime", tmp_path)
    runtime.prepare(net)
    digest = runtimes.structure_digest(net)
    other = build_network(NetworkSpec("Unet", "resnet18", 4, 0.25, encoder_weights="none"))
    runtimes._graphs[runtimes.structure_digest(other)] = runtimes._graphs[digest]  # another structure's graph
    served = runtime.prepare(other)
    assert not isinstance(served.encoder, OnnxRuntimeTrunk), "torch serves"
    assert "ONNX Runtime not used" in caplog.text


def test_auto_serves_the_runtime_it_measured_faster_and_remembers_it(tmp_path, fresh_process, caplog) -> None:
    caplog.set_level(logging.INFO)
    runtime = ServingRuntime("auto", tmp_path)
    net = trained_like(0)
    served = runtime.prepare(net)
    measured = runtime.measured
    assert set(measured) == {"torch", "onnxruntime"} and all(0 < seconds < 60 for seconds in measured.values())
    faster = min(measured, key=measured.__getitem__)
    assert runtime.runtime(net) == faster
    assert isinstance(served.encoder, OnnxRuntimeTrunk) == (faster == "onnxruntime")
    assert "INFERENCE_RUNTIME=auto: " + faster in caplog.text
    (remembered,) = tmp_path.glob("auto-*.json")
    assert json.loads(remembered.read_text())["chosen"] == faster

    runtimes._auto_choices.clear()  # a new process on this host reads the choice instead of measuring again
    again = ServingRuntime("auto", tmp_path)
    assert again.runtime(net) == faster and again.measured == {}


def test_torch_and_other_devices_keep_torch(tmp_path, fresh_process) -> None:
    net = trained_like(0)
    served = ServingRuntime("torch", tmp_path).prepare(net)
    assert served is not net and not isinstance(served.encoder, OnnxRuntimeTrunk)
    assert not list(tmp_path.iterdir()), "nothing exported"
    on_meta = copy.deepcopy(net).to("meta")  # stands for CUDA: any device but the CPU
    assert ServingRuntime("onnxruntime", tmp_path).runtime(on_meta) == "torch"
    with pytest.raises(ValueError, match="INFERENCE_RUNTIME must be one of"):
        ServingRuntime("tensorrt", tmp_path)


def test_the_predict_path_proposes_the_same_regions_with_the_same_scores_on_either_runtime(
    settings: Settings, fresh_process
) -> None:
    config = parse_label_config((REPO_ROOT / "label_configs" / "superpixel_dominant.xml").read_text())
    paths = sorted((camvid_root() / "val" / "images").glob("*.jpg"))[:3]
    tasks = [{"id": number, "data": {"image": str(path)}} for number, path in enumerate(paths, start=1)]
    predictions = {}
    for runtime in ("torch", "onnxruntime"):
        # float32 on both: with PRECISION=auto a CPU with native bf16 runs torch in bf16 (ONNX Runtime stays float32)
        backend = Backend(dataclasses.replace(settings, inference_runtime=runtime, precision="fp32"))
        if runtime == "torch":
            spec = dataclasses.replace(backend.cache.base_spec, num_classes=len(config.class_names))
            backend.models.save("1", trained_like(0, spec), config.class_names, {})
        served, version = backend.cache.get("1", config.class_names)
        assert version == 1 and isinstance(served.encoder, OnnxRuntimeTrunk) == (runtime == "onnxruntime")
        torch.manual_seed(0)  # the same dropout draws: the head samples in torch on either runtime
        predictions[runtime] = backend.predict(tasks, config, "1")
    for reference, candidate in zip(predictions["torch"], predictions["onnxruntime"], strict=True):
        assert not reference.failed and not candidate.failed
        assert candidate.score == pytest.approx(reference.score, rel=1e-4)
        proposed, expected = query_regions(candidate.result), query_regions(reference.result)
        assert len(expected) == 10, "ten query regions per task (top_k_regions)"
        assert proposed == expected, "the same top query regions, in the same order"


def query_regions(result: list[dict]) -> list[str]:
    """The geometry of each query region a prediction proposes, in its order (without its random id)."""
    return [json.dumps(item["value"], sort_keys=True) for item in result if item["from_name"] == "query"]
