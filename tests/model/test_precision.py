"""Precision choice: bf16 only where the CPU runs it natively, fp32 otherwise, and a forced bf16 still works."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ls_al_backend.model.inference import mc_dropout
from ls_al_backend.model.network import NetworkSpec, build_network
from ls_al_backend.model.precision import FLOAT32, autocast, cpu_flags, resolve_precision, to_channels_last

CPU = torch.device("cpu")
CUDA = torch.device("cuda")

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_bf16\nbugs\t\t: spectre\n")
    assert {"avx512f", "amx_bf16"} <= cpu_flags(cpuinfo)
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize(
    ("device", "preference", "native", "expected"),
    [
        (CPU, "auto", True, "bf16"),
        (CPU, "auto", False, "fp32"),  # emulated bf16 is many times slower: fall back
        (CPU, "fp32", True, "fp32"),
        (CPU, "bf16", False, "bf16"),  # asked for: honoured (slow, not wrong)
        (CUDA, "auto", False, "fp16"),
        (CUDA, "bf16", False, "bf16"),
        (CUDA, "fp32", False, "fp32"),
    ],
)
def test_the_choice_per_device_and_cpu(device, preference, native, expected) -> None:
    precision = resolve_precision(device, preference, native_bf16=native)
    assert precision.name == expected
    assert precision.needs_grad_scaler == (expected == "fp16")


def test_bad_choices_are_refused() -> None:
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision(CPU, "fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision(CPU, "int8")


def test_float32_autocast_changes_nothing_and_channels_last_keeps_values() -> None:
    batch = torch.randn(2, 3, 8, 8)
    with autocast(CPU, FLOAT32):
        product = batch @ batch.transpose(-1, -2)
    assert product.dtype == torch.float32
    moved = to_channels_last(batch)
    assert moved.is_contiguous(memory_format=torch.channels_last) and torch.equal(moved, batch)


def test_bf16_inference_gives_the_fp32_scores_within_a_tolerance() -> None:
    """The fallback is safe to switch either way: bf16 MC statistics stay close to fp32 ones."""
    net = build_network(NetworkSpec("Unet", "timm-tf_efficientnet_lite0", 4, 0.2), seed=0)
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    summaries = {}
    for name in ("fp32", "bf16"):
        torch.manual_seed(0)
        summaries[name] = mc_dropout(net, image, samples=4, precision=resolve_precision(CPU, name))
    fp32, bf16 = summaries["fp32"], summaries["bf16"]
    assert bf16.mean.dtype == torch.float32
    assert float((fp32.deterministic - bf16.deterministic).abs().mean()) < 0.01
    assert float((fp32.mean - bf16.mean).abs().mean()) < 0.01
    agreement = (fp32.deterministic.argmax(0) == bf16.deterministic.argmax(0)).float().mean()
    assert float(agreement) > 0.9, "bf16 rounding flips only near-tied pixels"
