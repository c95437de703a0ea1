"""Runtimes for the deterministic part of a served network: its encoder + decoder, run once per image.

``torch`` serves the network with its BatchNorms folded (:func:`~ls_al_backend.model.network.fold_batchnorm`).
``onnxruntime`` runs encoder + decoder as an ONNX graph with ONNX Runtime on the CPU (which fuses convolutions,
BatchNorms and activations itself). The MC-dropout head (dropout + 1x1 classifier) and everything after it stay in
torch, whatever the runtime. On CUDA the network always stays in torch.

The graph is exported once per network structure (architecture, encoder, library versions), not per version: its
weights are named after the network's state dict, and each version's weights are written into a copy of it when
that version's session is created (a fraction of a second, where an export takes seconds). The exported graphs are
cached in memory and on the local disk of the process that serves (``<DATA_DIR>/runtime-cache``), never in the
model store.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ls_al_backend.model.network import SegmentationNet, fold_batchnorm
from ls_al_backend.model.precision import FLOAT32, Precision, autocast, to_channels_last

log = logging.getLogger(__name__)

#: ``INFERENCE_RUNTIME`` values: ``auto`` measures which one is faster here (:class:`ServingRuntime`).
RUNTIMES = ("auto", "torch", "onnxruntime")
#: Bumped when the exported graph changes for the same structure (inputs, opset, exporter), so old files go unused.
EXPORT_FORMAT = 1
ONNX_OPSET = 17
#: ``auto``'s probe batch ``[1, 3, PROBE_SIDE, PROBE_SIDE]`` and its rounds (about a second on 2 busy cores).
PROBE_SIDE, PROBE_ROUNDS = 256, 3

_graphs: dict[str, bytes] = {}  # structure digest -> exported graph, for this process
_auto_choices: dict[tuple[str, str, int], str] = {}  # (structure digest, precision, threads) -> runtime, ``auto``'s
_lock = threading.Lock()


class RuntimeUnavailable(RuntimeError):
    """A network cannot run on the runtime asked for (missing package, export or graph mismatch)."""


class _Trunk(nn.Module):
    """Encoder then decoder as one module: images ``[B, 3, H, W]`` -> decoder features ``[B, F, h, w]``."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(images))


def trunk_weights(net: SegmentationNet) -> dict[str, torch.Tensor]:
    """Encoder and decoder weights and buffers of ``net`` by their names in the graph (``encoder.…``, ``decoder.…``);
    BatchNorm's ``num_batches_tracked`` counters, which inference never reads, are left out."""
    weights = _Trunk(net.encoder, net.decoder).state_dict()
    return {name: tensor for name, tensor in weights.items() if tensor.is_floating_point()}


def structure_digest(net: SegmentationNet) -> str:
    """SHA-256 of what the exported graph depends on: architecture, encoder, the names and shapes of the weights,
    the versions of the libraries that build it, and :data:`EXPORT_FORMAT`; not the values of the weights."""
    import segmentation_models_pytorch
    import timm

    shapes = [(name, list(tensor.shape)) for name, tensor in trunk_weights(net).items()]
    versions = [torch.__version__, segmentation_models_pytorch.__version__, timm.__version__, EXPORT_FORMAT]
    described = json.dumps([net.spec.arch, net.spec.encoder, versions, shapes])
    return hashlib.sha256(described.encode()).hexdigest()


def export_graph(net: SegmentationNet, path: Path) -> None:
    """Write ``net``'s encoder + decoder to ``path`` as ONNX (float32, batch, height and width dynamic), atomically,
    with one initializer per weight, named as in :func:`trunk_weights`, holding placeholder values.

    The weights of a private copy are first set to distinct random values, so the exporter merges no two of them
    (it shares initializers of equal value). The TorchScript-based exporter keeps its tracing state per thread:
    training or serving in other threads is untouched (``torch.fx`` tracing patches ``nn.Module.__call__`` for the
    whole process)."""
    trunk = copy.deepcopy(_Trunk(net.encoder, net.decoder)).to("cpu", torch.float32).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in trunk.state_dict().values():  # views of the copy's weights
            if tensor.is_floating_point():
                tensor.uniform_(0.5, 1.5, generator=generator)  # positive: valid BatchNorm variances too
    side = 2 * net.output_stride
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".export-", suffix=".onnx.tmp")
    os.close(handle)
    os.chmod(temporary, 0o644)  # readable by the host's other serving processes, as a plain file would be
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings about shapes turned into constants: sizes divide by 32
            torch.onnx.export(
                trunk,
                (torch.zeros(1, 3, side, side),),
                temporary,
                dynamo=False,
                input_names=["images"],
                output_names=["features"],
                dynamic_axes={
                    "images": {0: "batch", 2: "height", 3: "width"},
                    "features": {0: "batch", 2: "h", 3: "w"},
                },
                opset_version=ONNX_OPSET,
                do_constant_folding=False,  # keeps every weight an initializer of its own name
            )
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def with_weights(graph: bytes, weights: Mapping[str, torch.Tensor]) -> bytes:
    """The ONNX ``graph`` with each initializer replaced by the weight of its name (weights the graph does not use,
    such as an encoder's unused last convolution, are left out); :class:`RuntimeUnavailable` when an initializer
    has no weight of its name and shape."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(graph)
    unknown = [initializer.name for initializer in model.graph.initializer if initializer.name not in weights]
    if unknown:
        raise RuntimeUnavailable(f"{len(unknown)} weights of the graph are not the network's, e.g. {unknown[0]!r}")
    for initializer in model.graph.initializer:
        array = weights[initializer.name].detach().to("cpu", torch.float32).contiguous().numpy()
        if tuple(initializer.dims) != array.shape:
            raise RuntimeUnavailable(f"{initializer.name}: shape {array.shape}, the graph's {tuple(initializer.dims)}")
        initializer.CopyFrom(numpy_helper.from_array(np.asarray(array), initializer.name))
    return model.SerializeToString()


class OnnxRuntimeTrunk(nn.Module):
    """Encoder + decoder on an ONNX Runtime CPU session: float32 images ``[B, 3, H, W]`` -> features ``[B, F, h, w]``
    (float32, on the CPU). ``InferenceSession.run`` may be called from several threads at once."""

    def __init__(self, model: bytes, threads: int):
        super().__init__()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {"images": array})[0])


def with_trunk(net: SegmentationNet, trunk: nn.Module) -> SegmentationNet:
    """A copy of ``net`` (eval mode) whose :meth:`~SegmentationNet.features` run ``trunk``; its head is ``net``'s."""
    not_copied = {id(net.encoder): nn.Identity(), id(net.decoder): nn.Identity()}  # ``trunk`` replaces them
    served = copy.deepcopy(net, memo=not_copied).eval()
    served.encoder = trunk
    return served


def check_same_features(net: SegmentationNet, served: SegmentationNet) -> None:
    """:class:`RuntimeUnavailable` unless ``served`` gives ``net``'s features on a small random probe, up to float
    rounding (a weight left at its placeholder value, or a graph of another structure, is far off)."""
    side = 2 * net.output_stride
    probe = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, actual = net.features(probe), served.features(probe)
    tolerance = 1e-4 * max(1.0, float(expected.abs().max()))
    if actual.shape != expected.shape or not torch.allclose(actual, expected, rtol=1e-3, atol=tolerance):
        difference = float((actual - expected).abs().max()) if actual.shape == expected.shape else float("nan")
        raise RuntimeUnavailable(f"its features differ from torch's by up to {difference:.3g} on a probe")


def seconds_per_batch(net: SegmentationNet, images: torch.Tensor, precision: Precision, rounds: int) -> float:
    """Fastest of ``rounds`` timed runs of ``net.features(images)`` (after one untimed run), under ``precision``."""
    best = float("inf")
    with torch.no_grad(), autocast(images.device, precision):
        for round_index in range(rounds + 1):
            start = time.perf_counter()
            net.features(images)
            if round_index > 0:
                best = min(best, time.perf_counter() - start)
    return best


class ServingRuntime:
    """Prepares a loaded network for serving on the runtime of ``INFERENCE_RUNTIME`` (:data:`RUNTIMES`).

    ``auto`` on a CPU: the first network of a structure prepared in the process is timed on a probe batch with torch
    (BatchNorm folded, under the serving ``precision``) and with ONNX Runtime, interleaved, best of
    :data:`PROBE_ROUNDS`; the faster one serves it and every later network of that structure. The choice is kept in
    ``cache_dir`` for the other processes on the host (and later ones). Should ONNX Runtime fail (not installed, an
    export error, features that differ from torch's), torch serves and a warning says why.
    """

    def __init__(self, preference: str, cache_dir: Path, precision: Precision = FLOAT32):
        if preference not in RUNTIMES:
            raise ValueError(f"INFERENCE_RUNTIME must be one of {', '.join(RUNTIMES)}, got {preference!r}")
        self.preference = preference
        self.cache_dir = Path(cache_dir)
        self.precision = precision
        #: What ``auto`` measured last (runtime name -> seconds per probe batch); empty until it measures.
        self.measured: dict[str, float] = {}

    def runtime(self, net: SegmentationNet) -> str:
        """The runtime ``net`` is served on: the preference, torch on CUDA, ``auto``'s choice once measured."""
        if next(net.parameters()).device.type != "cpu":
            return "torch"
        if self.preference != "auto":
            return self.preference
        key = self._auto_key(net)
        if key not in _auto_choices and self._choice_path(key).is_file():  # measured by an earlier process here
            try:
                chosen = json.loads(self._choice_path(key).read_text())["chosen"]
                if chosen not in ("torch", "onnxruntime"):
                    raise ValueError(f"unknown runtime {chosen!r}")
                _auto_choices[key] = chosen
            except (OSError, ValueError, KeyError, TypeError) as error:
                log.warning("%s unreadable (%s); measuring again", self._choice_path(key), error)
        return _auto_choices.get(key, "auto")

    def prepare(self, net: SegmentationNet, project_id: str = "", version: int = 0) -> SegmentationNet:
        """The network to serve for ``net`` (version ``version`` of ``project_id``, for messages); never train or
        save it."""
        runtime = self.runtime(net)
        if runtime == "torch":
            return fold_batchnorm(net)
        try:
            started = time.perf_counter()
            served = with_trunk(net, OnnxRuntimeTrunk(self._graph_for(net), torch.get_num_threads()))
            check_same_features(net, served)
            log.info("project %s: v%d on ONNX Runtime (%.1f s)", project_id, version, time.perf_counter() - started)
        except Exception as error:  # ImportError, exporter and ONNX Runtime errors of many kinds
            log.warning("ONNX Runtime not used (%s: %s); serving with torch", type(error).__name__, error)
            return fold_batchnorm(net)
        if runtime == "onnxruntime":
            return served
        with _lock:
            key = self._auto_key(net)
            if key not in _auto_choices:
                folded = fold_batchnorm(net)
                _auto_choices[key] = self._measure(key, folded, served)
                return served if _auto_choices[key] == "onnxruntime" else folded
        return served if _auto_choices[key] == "onnxruntime" else fold_batchnorm(net)

    def _auto_key(self, net: SegmentationNet) -> tuple[str, str, int]:
        """What ``auto``'s choice holds for: the network structure, the serving precision, torch's thread count."""
        return structure_digest(net), self.precision.name, torch.get_num_threads()

    def _choice_path(self, key: tuple[str, str, int]) -> Path:
        """Where ``auto``'s choice for ``key`` is kept, so that other processes on this host (an RQ worker's forked
        jobs) need not measure again; delete it to measure again."""
        digest, precision, threads = key
        return self.cache_dir / f"auto-{digest[:20]}-{precision}-{threads}threads.json"

    def _graph_for(self, net: SegmentationNet) -> bytes:
        """The ONNX model of ``net``: its structure's graph (from memory, the disk cache, or exported now) with
        ``net``'s weights written in."""
        import onnx

        digest = structure_digest(net)
        with _lock:
            graph = _graphs.get(digest)
            if graph is None:
                path = self.cache_dir / f"{net.spec.arch}-{net.spec.encoder}-{digest[:20]}.onnx"
                try:
                    graph = path.read_bytes()
                    onnx.load_from_string(graph)
                except FileNotFoundError:
                    graph = None
                except Exception as error:  # protobuf's DecodeError and others: a damaged file
                    log.warning("%s unreadable (%s: %s); exporting again", path, type(error).__name__, error)
                    graph = None
                if graph is None:
                    started = time.perf_counter()
                    export_graph(net, path)
                    log.info("%s exported to ONNX in %.1f s", path, time.perf_counter() - started)
                    graph = path.read_bytes()
                _graphs[digest] = graph
        return with_weights(graph, trunk_weights(net))

    def _measure(self, key: tuple[str, str, int], folded: SegmentationNet, served: SegmentationNet) -> str:
        """``auto``: the faster runtime on a probe batch, logged with both times and kept (:meth:`_choice_path`)."""
        generator = torch.Generator().manual_seed(0)
        probe = to_channels_last(torch.randn(1, 3, PROBE_SIDE, PROBE_SIDE, generator=generator))
        self.measured = {"torch": float("inf"), "onnxruntime": float("inf")}
        for _ in range(PROBE_ROUNDS):
            self.measured["torch"] = min(self.measured["torch"], seconds_per_batch(folded, probe, self.precision, 1))
            self.measured["onnxruntime"] = min(
                self.measured["onnxruntime"], seconds_per_batch(served, probe, FLOAT32, 1)
            )
        chosen = min(self.measured, key=self.measured.__getitem__)
        times = ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in self.measured.items())
        log.info("INFERENCE_RUNTIME=auto: %s serves (encoder + decoder on a %dx%d probe: %s)", chosen, PROBE_SIDE,
                 PROBE_SIDE, times)  # fmt: skip
        record = {"chosen": chosen, "seconds": self.measured, "probe": [1, 3, PROBE_SIDE, PROBE_SIDE]}
        path = self._choice_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(record, indent=1))
        os.replace(temporary, path)
        return chosen
