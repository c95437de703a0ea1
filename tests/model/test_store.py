"""Checkpoints: atomic versioned files per project; the web cache reloads a newer version by itself."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from ls_al_backend.model.network import NetworkSpec, build_network
from ls_al_backend.model.store import CheckpointError, ModelCache, ModelStore

SPEC = NetworkSpec("Unet", "timm-tf_efficientnet_lite0", num_classes=2, head_dropout=0.1, encoder_weights="none")
CLASSES = ("a", "b")


def test_versions_count_up_and_load_back(tmp_path) -> None:
    store = ModelStore(tmp_path)
    assert store.latest("1") == 0 and store.versions("1") == []
    net = build_network(SPEC)
    assert store.save("1", net, CLASSES, {"loss": 0.5}) == 1
    assert store.save("1", net, CLASSES, {"loss": 0.4}) == 2
    assert store.versions("1") == [1, 2] and store.projects() == ["1"]
    checkpoint = store.load("1", 2)
    assert checkpoint.class_names == CLASSES and checkpoint.metadata == {"loss": 0.4} and checkpoint.spec == SPEC
    assert all(torch.equal(checkpoint.state_dict[k], v) for k, v in net.state_dict().items())
    assert not list((tmp_path / "1").glob("*.tmp")), "no temporary file is left behind"


def test_cache_builds_once_and_hot_reloads_a_new_version(tmp_path) -> None:
    store = ModelStore(tmp_path)
    cache = ModelCache(store, SPEC, torch.device("cpu"))
    net0, version0 = cache.get("7", CLASSES)
    assert version0 == 0 and cache.get("7", CLASSES)[0] is net0

    trained = build_network(SPEC, seed=1)
    store.save("7", trained, CLASSES, {})
    net1, version1 = cache.get("7", CLASSES)
    assert version1 == 1 and net1 is not net0
    assert torch.equal(net1.classifier.weight, trained.classifier.weight)
    assert not net1.training


def test_loading_a_checkpoint_leaves_torch_random_state_as_it_was(tmp_path) -> None:
    store = ModelStore(tmp_path)
    store.save("7", build_network(SPEC, seed=1), CLASSES, {})
    cache = ModelCache(store, SPEC, torch.device("cpu"))
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    assert cache.get("7", CLASSES)[1] == 1
    assert torch.equal(torch.rand(4), expected), "serving a version does not shift the draws of the caller"


def test_cache_serves_v0_when_the_classes_changed(tmp_path) -> None:
    store = ModelStore(tmp_path)
    store.save("7", build_network(SPEC), CLASSES, {})
    cache = ModelCache(store, SPEC, torch.device("cpu"))
    net, version = cache.get("7", ("a", "b", "c"))
    assert version == 0 and net.classifier.out_channels == 3
    assert cache.get("7", ("a", "b", "c"))[0] is net, "the fallback is cached too"


class Payload:
    """Stands for any object a pickle could smuggle into a checkpoint (its reduce could run code)."""

    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_a_checkpoint_holding_other_objects_than_tensors_is_refused(tmp_path) -> None:
    store = ModelStore(tmp_path)
    store.save("1", build_network(SPEC), CLASSES, {})
    path = tmp_path / "1" / "v1.pt"
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "metadata": {"note": Payload()}}, path)
    with pytest.raises(CheckpointError, match="cannot be loaded") as raised:
        store.load("1", 1)
    assert isinstance(raised.value.__cause__, pickle.UnpicklingError), "the unpickler refused it; nothing ran"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_newest_checkpoint_is_passed_over_for_the_previous_version(tmp_path, damage) -> None:
    store = ModelStore(tmp_path)
    store.save("1", build_network(SPEC), CLASSES, {"round": 1})
    store.save("1", build_network(SPEC), CLASSES, {"round": 2})
    path = tmp_path / "1" / "v2.pt"
    data = path.read_bytes()
    damaged = {"truncated": data[: len(data) // 2], "garbage": b"\x00not a checkpoint" * 50, "empty": b""}
    path.write_bytes(damaged[damage])
    with pytest.raises(CheckpointError, match="v2.pt cannot be loaded"):
        store.load("1", 2)
    assert store.newest_readable("1").metadata == {"round": 1}
    cache = ModelCache(store, SPEC, torch.device("cpu"))
    assert cache.get("1", CLASSES)[1] == 1, "predictions go on with the newest readable version"
    assert cache.metadata("1") == {"round": 1}
    assert store.save("1", build_network(SPEC), CLASSES, {"round": 3}) == 3, "the corrupt file is never overwritten"
    assert path.read_bytes() != data


def test_metadata_is_stored_as_plain_values(tmp_path) -> None:
    store = ModelStore(tmp_path)
    store.save("1", build_network(SPEC), CLASSES, {"counts": np.arange(3), "share": np.float32(0.5), "shape": (2, 3)})
    assert store.load("1", 1).metadata == {"counts": [0, 1, 2], "share": 0.5, "shape": [2, 3]}


def test_a_version_saved_concurrently_is_never_overwritten(tmp_path, monkeypatch) -> None:
    store = ModelStore(tmp_path)
    store.save("1", build_network(SPEC), CLASSES, {"by": "first"})
    monkeypatch.setattr(store, "latest", lambda project_id: 0)  # a second trainer that read the count before
    with pytest.raises(FileExistsError, match="another trainer saved concurrently"):
        store.save("1", build_network(SPEC), CLASSES, {"by": "second"})
    assert store.load("1", 1).metadata == {"by": "first"}
    assert not list((tmp_path / "1").glob("*.tmp")), "no temporary file is left behind"
