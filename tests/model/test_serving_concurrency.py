"""Building a version for serving while another thread trains or serves: neither side may fail.

``torch.fx`` tracing (which once folded BatchNorm for serving) patches ``nn.Module.__call__`` for the whole process,
so a training step in another thread went through the tracer and failed with ``NameError: module is not installed
as a submodule``. These tests fold and load versions many times (and export and load them for ONNX Runtime) while a
real training step, or MC-dropout inference on a served network, runs in a second thread, and require both sides to
finish cleanly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest
import torch
from torch.nn import functional as F

from ls_al_backend.model import runtimes
from ls_al_backend.model.inference import mc_dropout
from ls_al_backend.model.network import NetworkSpec, SegmentationNet, build_network, fold_batchnorm
from ls_al_backend.model.runtimes import OnnxRuntimeTrunk, ServingRuntime
from ls_al_backend.model.store import ModelCache, ModelStore
from tests.conftest import random_rgb

SPEC = NetworkSpec("Unet", "timm-tf_efficientnet_lite0", num_classes=3, head_dropout=0.2, encoder_weights="none")
CLASSES = ("a", "b", "c")
#: Folds (or versions built) at least, and steps the other thread completes while they run, at least; at most
#: ``MAX_BUILDS`` builds are made waiting for those steps.
BUILDS, OVERLAPPING_STEPS, MAX_BUILDS = 4, 4, 40
#: Guards against a hang only (a stuck thread), never a measure of speed.
HANG_GUARD_S = 300.0


def training_step(net: SegmentationNet) -> Callable[[], None]:
    """One optimizer step on a 2 x 64 x 64 batch: forward in train mode, loss, backward, update."""
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, SPEC.num_classes, (2, 64, 64), generator=torch.Generator().manual_seed(2))

    def step() -> None:
        net.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(net(images), labels).backward()
        optimizer.step()

    return step


def serving_step(net: SegmentationNet) -> Callable[[], None]:
    """One MC-dropout prediction of a 48 x 64 image on a network folded for serving (another ``/predict``)."""
    served = fold_batchnorm(net)
    image = random_rgb(48, 64)
    return lambda: mc_dropout(served, image, samples=2, max_side=64)


class BackgroundLoop:
    """Runs ``step`` over and over in a thread until stopped; keeps the first error and counts the steps done."""

    def __init__(self, step: Callable[[], None]):
        self.step = step
        self.steps = 0
        self.error: BaseException | None = None
        self.started = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.step()
                self.steps += 1
                self.started.set()
        except BaseException as error:  # the failure under test is a NameError from torch.fx; keep whatever it is
            self.error = error
            self.started.set()

    def __enter__(self) -> BackgroundLoop:
        self._thread.start()
        assert self.started.wait(HANG_GUARD_S), "the background step never completed"
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(HANG_GUARD_S)


def build_while(loop: BackgroundLoop, build: Callable[[], SegmentationNet]) -> tuple[list[SegmentationNet], int]:
    """Call ``build`` until it ran ``BUILDS`` times and ``loop`` completed ``OVERLAPPING_STEPS`` steps meanwhile (or
    ``loop`` failed, or ``MAX_BUILDS`` were made); the networks built and the steps ``loop`` completed meanwhile."""
    built: list[SegmentationNet] = []
    first_step = loop.steps
    while loop.error is None and len(built) < MAX_BUILDS:
        built.append(build())
        if len(built) >= BUILDS and loop.steps - first_step >= OVERLAPPING_STEPS:
            break
    return built, loop.steps - first_step


def assert_folded(net: SegmentationNet, original: SegmentationNet) -> None:
    """``net`` is a folded copy: no BatchNorm runs in its encoder or decoder, and it is not ``original``."""
    assert net is not original and not net.training
    calls = []
    hooks = [
        module.register_forward_pre_hook(lambda *_: calls.append(1))
        for module in net.modules()
        if isinstance(module, torch.nn.BatchNorm2d)
    ]
    with torch.no_grad():
        net.features(torch.zeros(1, 3, 64, 64))
    for hook in hooks:
        hook.remove()
    assert calls == [], "every BatchNorm that runs is folded into its convolution"


@pytest.fixture(scope="module")
def net() -> SegmentationNet:
    return build_network(SPEC)


@pytest.mark.parametrize("other_work", [training_step, serving_step], ids=["training", "serving"])
def test_folding_batchnorm_while_another_thread_trains_or_serves(one_thread, net, other_work, caplog) -> None:
    caplog.set_level(logging.WARNING)
    trained = build_network(SPEC, seed=3)
    with BackgroundLoop(other_work(trained)) as loop:
        folded, overlapping = build_while(loop, lambda: fold_batchnorm(net))
    assert loop.error is None, f"the other thread failed while BatchNorm was folded: {loop.error!r}"
    assert len(folded) >= BUILDS and overlapping >= OVERLAPPING_STEPS, "the builds overlapped the other thread's steps"
    assert "BatchNorm not folded" not in caplog.text
    for network in folded:
        assert_folded(network, net)


def test_serving_new_versions_while_training_runs(one_thread, tmp_path, net, caplog) -> None:
    caplog.set_level(logging.WARNING)
    store = ModelStore(tmp_path)
    cache = ModelCache(store, SPEC, torch.device("cpu"))
    trained = build_network(SPEC, seed=3)
    versions = []

    def save_and_serve() -> SegmentationNet:
        store.save("1", net, CLASSES, {})
        served, version = cache.get("1", CLASSES)
        versions.append(version)
        return served

    with BackgroundLoop(training_step(trained)) as loop:
        served, overlapping = build_while(loop, save_and_serve)
    assert loop.error is None, f"training failed while a version was built for serving: {loop.error!r}"
    assert len(served) >= BUILDS and overlapping >= OVERLAPPING_STEPS, "the builds overlapped the training steps"
    assert versions == list(range(1, len(served) + 1)), "each new version is loaded and served"
    assert "BatchNorm not folded" not in caplog.text
    assert_folded(served[-1], net)
    assert all(bool(torch.isfinite(p).all()) for p in trained.parameters()), "training went on normally"


def test_exporting_and_serving_on_onnxruntime_while_training_runs(
    one_thread, tmp_path, net, monkeypatch, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(runtimes, "_graphs", {})  # nothing exported in this process yet: the export overlaps too
    runtime = ServingRuntime("onnxruntime", tmp_path)
    trained = build_network(SPEC, seed=3)
    with BackgroundLoop(training_step(trained)) as loop:
        served, overlapping = build_while(loop, lambda: runtime.prepare(net))
    assert loop.error is None, f"training failed while a version was exported or loaded: {loop.error!r}"
    assert len(served) >= BUILDS and overlapping >= OVERLAPPING_STEPS, "the builds overlapped the training steps"
    assert "ONNX Runtime not used" not in caplog.text
    assert all(isinstance(network.encoder, OnnxRuntimeTrunk) for network in served)
