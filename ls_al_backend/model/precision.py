"""Numeric precision and memory layout for training and inference: pick the fastest setting the device runs well.

* CUDA: float16 autocast (AMP, with a ``GradScaler`` in training).
* CPU with native bfloat16 matrix units (``amx_bf16`` or ``avx512_bf16`` in ``/proc/cpuinfo``): bfloat16 autocast.
  On a CPU without them bfloat16 is emulated and 18-60x SLOWER than float32, so ``auto`` keeps float32 there.
* Everything else: float32.

Convolutions run in ``channels_last`` memory layout on every device (faster on CPU and on CUDA tensor cores).
``PRECISION`` (``auto`` | ``fp32`` | ``bf16`` | ``fp16``) overrides the choice; a forced ``bf16`` on a CPU without
native support is honoured (it is slow, not wrong), ``fp16`` is CUDA-only.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

#: CPU flags (``/proc/cpuinfo``) that mean bfloat16 matrix maths runs natively.
NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})

CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags (the first ``flags`` line of ``/proc/cpuinfo``); empty where there is none."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 matrix products natively (AMX or AVX-512 BF16)."""
    return bool(cpu_flags() & NATIVE_BF16_FLAGS)


@dataclass(frozen=True)
class Precision:
    """What :func:`resolve_precision` chose: the autocast dtype (None: float32) and a readable reason."""

    autocast_dtype: torch.dtype | None
    reason: str

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]

    @property
    def needs_grad_scaler(self) -> bool:
        return self.autocast_dtype is torch.float16


FLOAT32 = Precision(None, "float32")


def resolve_precision(device: torch.device, preference: str = "auto", native_bf16: bool | None = None) -> Precision:
    """The precision to run on ``device`` for ``preference`` (one of :data:`PRECISIONS`).

    ``native_bf16`` overrides the CPU detection (tests use it). Raises ``ValueError`` for an unknown preference
    or ``fp16`` on a CPU.
    """
    if preference not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {preference!r}")
    if preference == "fp32":
        return Precision(None, "float32 (asked for)")
    if device.type == "cuda":
        if preference == "bf16":
            return Precision(torch.bfloat16, "bfloat16 autocast on CUDA (asked for)")
        return Precision(torch.float16, "float16 autocast (AMP) on CUDA")
    if preference == "fp16":
        raise ValueError("precision fp16 needs a CUDA device; use bf16 or fp32 on a CPU")
    native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    if preference == "bf16":
        return Precision(torch.bfloat16, "bfloat16 autocast (asked for)" + ("" if native else "; no native support"))
    if native:
        return Precision(torch.bfloat16, "bfloat16 autocast: the CPU has native bf16 (AMX / AVX-512 BF16)")
    return Precision(None, "float32: the CPU has no native bf16 (autocast would be many times slower)")


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision) -> Iterator[None]:
    """``torch.autocast`` for the chosen precision; a no-op for float32."""
    if precision.autocast_dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=precision.autocast_dtype):
        yield


def to_channels_last(batch: torch.Tensor) -> torch.Tensor:
    """A ``[B, C, H, W]`` batch in channels-last memory layout (same values and shape)."""
    return batch.contiguous(memory_format=torch.channels_last)
