"""The CUDA path: float16 autocast (AMP) with a gradient scaler in training, inference whose scores match float32,
and checkpoints trained on a GPU that load and serve on a CPU.

Skipped where torch sees no CUDA device (CI has none); on a GPU machine: ``pytest tests/model/test_cuda.py``.
The rest of the suite runs on CUDA there too wherever it uses the default ``DEVICE=auto``.
"""

from __future__ import annotations

import pytest
import torch

from ls_al_backend.acquisition.reductions import region_scores
from ls_al_backend.labeling.annotations import LabelTarget
from ls_al_backend.model.batches import TrainingSample
from ls_al_backend.model.inference import mc_dropout, to_tensor
from ls_al_backend.model.losses import partial_cross_entropy
from ls_al_backend.model.network import NetworkSpec, SegmentationNet, build_network
from ls_al_backend.model.precision import resolve_precision
from ls_al_backend.model.store import ModelStore
from ls_al_backend.model.train_config import TrainConfig
from ls_al_backend.model.training import train
from tests.conftest import camvid_training_pairs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
SPEC = NetworkSpec("Unet", "timm-tf_efficientnet_lite0", num_classes=11, head_dropout=0.1)
SIZE = 96


@pytest.fixture(scope="module")
def samples() -> list[TrainingSample]:
    """Four CamVid training images at 96x96, labelled densely by their masks (void ignored)."""
    pairs = camvid_training_pairs(SIZE, every=60, count=4)
    return [TrainingSample(index, image, LabelTarget(labels)) for index, (image, labels) in enumerate(pairs)]


@pytest.fixture
def scalers(monkeypatch) -> list[torch.amp.GradScaler]:
    """Every ``torch.amp.GradScaler`` that training creates during the test, in order."""
    created = []
    grad_scaler = torch.amp.GradScaler

    def recording_scaler(*args, **kwargs) -> torch.amp.GradScaler:
        created.append(grad_scaler(*args, **kwargs))
        return created[-1]

    monkeypatch.setattr(torch.amp, "GradScaler", recording_scaler)
    return created


def loss_on(net: SegmentationNet, samples: list[TrainingSample], device: torch.device) -> float:
    """Float32 cross entropy of the eval-mode network on whole images."""
    net.eval()
    with torch.no_grad():
        images = torch.stack([to_tensor(sample.image) for sample in samples]).to(device)
        labels = torch.stack([torch.from_numpy(sample.target.labels) for sample in samples]).to(device)
        return partial_cross_entropy(net.to(device)(images).float(), labels).item()


def test_training_on_cuda_runs_amp_with_an_active_grad_scaler_and_lowers_the_loss(samples, scalers) -> None:
    net = build_network(SPEC, seed=0)
    before = loss_on(net, samples, CUDA)
    config = TrainConfig(epochs=4, min_steps=40, batch_size=4, lr=1e-3, crop_size=SIZE, seed=0)
    result = train(net, samples, config, CUDA)
    assert result.metrics["device"].startswith("cuda") and result.metrics["precision"] == "fp16"
    assert scalers and all(scaler.is_enabled() for scaler in scalers), "fp16 training scales its gradients"
    assert all(parameter.device.type == "cuda" for parameter in net.parameters())
    assert all(bool(torch.isfinite(parameter).all()) for parameter in net.parameters()), "no overflow got through"
    assert loss_on(net, samples, CUDA) < 0.8 * before


def test_fp32_training_on_cuda_needs_no_scaler(samples, scalers) -> None:
    net = build_network(SPEC, seed=0)
    result = train(net, samples[:2], TrainConfig(epochs=1, batch_size=2, crop_size=SIZE, precision="fp32"), CUDA)
    assert result.metrics["precision"] == "fp32"
    assert scalers and not any(scaler.is_enabled() for scaler in scalers)


def test_fp16_mc_dropout_on_cuda_gives_the_fp32_scores_within_a_tolerance(samples) -> None:
    net = build_network(SPEC, seed=0).to(CUDA).eval()
    image = samples[0].image
    summaries = {}
    for name in ("fp32", "fp16"):
        torch.manual_seed(0)
        summaries[name] = mc_dropout(net, image, samples=4, precision=resolve_precision(CUDA, name))
    fp32, fp16 = summaries["fp32"], summaries["fp16"]
    assert fp16.mean.dtype == torch.float32 and fp16.mean.device.type == "cuda"
    assert float((fp32.deterministic - fp16.deterministic).abs().mean()) < 0.01
    assert float((fp32.mean - fp16.mean).abs().mean()) < 0.01
    agreement = (fp32.deterministic.argmax(0) == fp16.deterministic.argmax(0)).float().mean()
    assert float(agreement) > 0.95


def test_fp32_inference_on_cuda_matches_the_cpu(samples) -> None:
    """Up to TF32 rounding, which cuDNN's convolutions use by default."""
    net = build_network(SPEC, seed=0).eval()
    image = samples[1].image
    fp32 = resolve_precision(CPU, "fp32")
    on_cpu = mc_dropout(net, image, samples=1, precision=fp32).deterministic
    on_cuda = mc_dropout(net.to(CUDA), image, samples=1, precision=fp32).deterministic.cpu()
    assert float((on_cpu - on_cuda).abs().mean()) < 1e-3
    assert float((on_cpu.argmax(0) == on_cuda.argmax(0)).float().mean()) > 0.99


def test_a_version_trained_on_cuda_loads_on_a_cpu_with_the_same_outputs(samples, tmp_path) -> None:
    net = build_network(SPEC, seed=0)
    train(net, samples[:2], TrainConfig(epochs=1, batch_size=2, crop_size=SIZE, seed=0), CUDA)
    store = ModelStore(tmp_path)
    version = store.save("7", net, tuple(f"class{i}" for i in range(11)), {"device": "cuda"})
    checkpoint = store.load("7", version)
    assert all(tensor.device.type == "cpu" for tensor in checkpoint.state_dict.values())
    restored = SegmentationNet(checkpoint.spec)
    restored.load_state_dict(checkpoint.state_dict)
    on_cpu, on_cuda = loss_on(restored, samples, CPU), loss_on(net, samples, CUDA)
    assert abs(on_cpu - on_cuda) < 1e-2 * on_cuda, "the same weights, up to TF32 rounding on the GPU"


def test_region_scores_on_cuda_are_the_same_every_call_and_equal_the_cpus() -> None:
    """Float sums on CUDA add in an arbitrary order: the reduction must not, or equal models query other regions."""
    generator = torch.Generator().manual_seed(0)
    score_map = torch.rand(360, 480, generator=generator)
    regions = torch.randint(0, 700, (360, 480), generator=generator)
    on_cpu = region_scores(score_map, regions)
    calls = [region_scores(score_map.to(CUDA), regions.to(CUDA)) for _ in range(5)]
    assert all(call.device.type == "cuda" for call in calls)
    assert all(torch.equal(call.cpu(), on_cpu) for call in calls)
