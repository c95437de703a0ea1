"""Model versions in an S3-compatible store, against a real SeaweedFS: a version is visible only once its manifest
is written, a checkpoint that does not match its manifest's checksum is refused, two writers never share a number."""

from __future__ import annotations

import functools
import threading
import uuid
from pathlib import Path

import pytest
import torch

from ls_al_backend.model import object_store
from ls_al_backend.model.network import NetworkSpec, SegmentationNet, build_network
from ls_al_backend.model.object_store import (
    ObjectModelStore,
    StoreUnavailable,
    VersionConflict,
    open_model_store,
    parse_s3_url,
)
from ls_al_backend.model.store import CheckpointError, ModelCache, ModelStore
from tests.seaweedfs import SeaweedFS, seaweedfs_fixture, seaweedfs_module_fixture  # noqa: F401  (fixtures)

SPEC = NetworkSpec("Unet", "timm-tf_efficientnet_lite0", num_classes=2, head_dropout=0.1, encoder_weights="none")
CLASSES = ("a", "b")
MB = 1_000_000


@functools.cache
def network(seed: int = 0) -> SegmentationNet:
    """An untrained network (built once per seed: building costs about a second on a busy CPU)."""
    return build_network(SPEC, seed=seed)


def make_store(server: SeaweedFS, tmp_path: Path, prefix: str = "", **options) -> ObjectModelStore:
    """A store on ``server`` under ``prefix`` (a fresh one per test by default), its read cache in ``tmp_path``."""
    prefix = prefix or f"models-{uuid.uuid4().hex[:8]}"
    values = {"cache_max_bytes": 500 * MB, "list_ttl_s": 0.0, "client": server.client(), **options}
    return ObjectModelStore(server.url(prefix), tmp_path / f"cache-{uuid.uuid4().hex[:6]}", **values)


def manifest_key(store: ObjectModelStore, project: str, version: int) -> str:
    return f"{store.prefix}{project}/manifests/v{version}.json"


def checkpoint_key(store: ObjectModelStore, project: str, version: int) -> str:
    return object_store.Manifest.from_json(store._get(manifest_key(store, project, version), "test"), "test").checkpoint


def test_versions_save_and_load_back_with_a_manifest_each(seaweedfs_module: SeaweedFS, tmp_path: Path) -> None:
    store = make_store(seaweedfs_module, tmp_path)
    assert store.versions("1") == [] and store.latest("1") == 0 and store.projects() == []
    net = network(3)
    assert store.save("1", net, CLASSES, {"loss": 0.5}) == 1
    assert store.save("1", net, CLASSES, {"loss": 0.4}) == 2
    assert store.versions("1") == [1, 2] and store.projects() == ["1"]
    checkpoint = store.load("1", 2)
    assert checkpoint.class_names == CLASSES and checkpoint.metadata == {"loss": 0.4} and checkpoint.spec == SPEC
    assert all(torch.equal(checkpoint.state_dict[k], v) for k, v in net.state_dict().items())
    keys = seaweedfs_module.keys(store.prefix)
    assert [key.rsplit("/", 1)[1] for key in keys if "/manifests/" in key] == ["v1.json", "v2.json"]
    assert len([key for key in keys if "/checkpoints/" in key]) == 2
    fresh = make_store(seaweedfs_module, tmp_path, prefix=store.prefix.rstrip("/"))
    assert fresh.load("1", 1).metadata == {"loss": 0.5}, "another process (empty cache) reads the same versions"


def test_a_checkpoint_without_its_manifest_is_not_a_version(seaweedfs_module: SeaweedFS, tmp_path: Path) -> None:
    store = make_store(seaweedfs_module, tmp_path)
    store.save("1", network(), CLASSES, {"round": 1})
    client = seaweedfs_module.client()
    body = client.get_object(Bucket=seaweedfs_module.bucket, Key=checkpoint_key(store, "1", 1))["Body"].read()
    # what a writer that died between its two puts leaves behind, and stray objects
    client.put_object(Bucket=seaweedfs_module.bucket, Key=f"{store.prefix}1/checkpoints/v7-dead.pt", Body=body)
    client.put_object(Bucket=seaweedfs_module.bucket, Key=f"{store.prefix}1/manifests/notes.txt", Body=b"x")
    assert store.versions("1") == [1]
    assert store.save("1", network(), CLASSES, {"round": 2}) == 2


def test_a_checkpoint_that_does_not_match_its_checksum_is_refused(seaweedfs_module: SeaweedFS, tmp_path: Path) -> None:
    writer = make_store(seaweedfs_module, tmp_path)
    writer.save("1", network(1), CLASSES, {"round": 1})
    writer.save("1", network(2), CLASSES, {"round": 2})
    # v2's object replaced by another checkpoint that loads fine: only the checksum tells
    other = make_store(seaweedfs_module, tmp_path)
    other.save("1", network(1), CLASSES, {"round": 2})
    client = seaweedfs_module.client()
    impostor = client.get_object(Bucket=seaweedfs_module.bucket, Key=checkpoint_key(other, "1", 1))["Body"].read()
    client.put_object(Bucket=seaweedfs_module.bucket, Key=checkpoint_key(writer, "1", 2), Body=impostor)

    reader = make_store(seaweedfs_module, tmp_path, prefix=writer.prefix.rstrip("/"))
    with pytest.raises(CheckpointError, match="checksum mismatch, refused"):
        reader.load("1", 2)
    assert not list(reader.cache.folder.glob("*")), "the refused bytes are not cached"
    assert reader.newest_readable("1").metadata == {"round": 1}
    cache = ModelCache(reader, SPEC, torch.device("cpu"))
    assert cache.get("1", CLASSES)[1] == 1, "/predict goes on with the previous version"
    assert cache.metadata("1") == {"round": 1}
    assert len(list(reader.cache.folder.glob("*.pt"))) == 1, "only v1 was cached"


def test_a_damaged_cached_copy_is_downloaded_again(seaweedfs_module: SeaweedFS, tmp_path: Path) -> None:
    store = make_store(seaweedfs_module, tmp_path)
    store.save("1", network(), CLASSES, {"round": 1})
    store.load("1", 1)
    (cached,) = store.cache.folder.glob("*.pt")
    cached.write_bytes(b"rot")
    assert store.load("1", 1).metadata == {"round": 1}
    assert cached.stat().st_size > 1000


def test_a_manifest_whose_checkpoint_is_missing_is_passed_over(seaweedfs_module: SeaweedFS, tmp_path: Path) -> None:
    store = make_store(seaweedfs_module, tmp_path)
    store.save("1", network(), CLASSES, {"round": 1})
    store.save("1", network(), CLASSES, {"round": 2})
    seaweedfs_module.client().delete_object(Bucket=seaweedfs_module.bucket, Key=checkpoint_key(store, "1", 2))
    with pytest.raises(CheckpointError, match="is missing"):
        store.load("1", 2)
    assert store.newest_readable("1").metadata == {"round": 1}


def test_concurrent_writers_never_share_a_version_number(seaweedfs_module: SeaweedFS, tmp_path: Path) -> None:
    prefix = f"race-{uuid.uuid4().hex[:8]}"
    writers = [make_store(seaweedfs_module, tmp_path, prefix=prefix) for _ in range(4)]
    net = network()
    start, saved, errors = threading.Barrier(len(writers)), {}, []

    def save(index: int) -> None:
        start.wait()
        try:
            saved[index] = writers[index].save("1", net, CLASSES, {"writer": index})
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=save, args=(index,)) for index in range(len(writers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(saved.values()) == [1, 2, 3, 4], saved
    for index, version in saved.items():
        assert writers[0].load("1", version).metadata == {"writer": index}, "each number holds its own writer's model"
    checkpoints = seaweedfs_module.keys(f"{prefix}/1/checkpoints/")
    assert len(checkpoints) == 4, f"a writer that lost a number deleted its upload: {checkpoints}"


def test_a_writer_that_loses_the_number_takes_the_next(seaweedfs_module, tmp_path, monkeypatch) -> None:
    first = make_store(seaweedfs_module, tmp_path)
    late = make_store(seaweedfs_module, tmp_path, prefix=first.prefix.rstrip("/"))
    first.save("1", network(), CLASSES, {"by": "first"})
    real_listing = late._list_versions
    calls = []

    def stale_once(project_id: str) -> list[int]:  # a writer that listed just before the other one published
        calls.append(project_id)
        return [] if len(calls) == 1 else real_listing(project_id)

    monkeypatch.setattr(late, "_list_versions", stale_once)
    assert late.save("1", network(), CLASSES, {"by": "late"}) == 2
    assert first.load("1", 1).metadata == {"by": "first"} and first.load("1", 2).metadata == {"by": "late"}
    assert len(seaweedfs_module.keys(f"{first.prefix}1/checkpoints/")) == 2

    monkeypatch.setattr(late, "_list_versions", lambda project_id: [])  # never sees the others: gives up loudly
    with pytest.raises(VersionConflict, match=r"versions \[1, 1, 1, 1, 1\] were each taken"):
        late.save("1", network(), CLASSES, {"by": "blind"})
    assert first.versions("1") == [1, 2] and len(seaweedfs_module.keys(f"{first.prefix}1/checkpoints/")) == 2


def test_the_read_cache_stays_under_its_size_limit(seaweedfs_module: SeaweedFS, tmp_path: Path) -> None:
    writer = make_store(seaweedfs_module, tmp_path)
    for round_ in range(3):
        writer.save("1", network(), CLASSES, {"round": round_})
    assert not list(writer.cache.folder.glob("*.pt")), "saving does not fill the read cache"
    one = len(writer._get(checkpoint_key(writer, "1", 1), "test"))
    limit = int(2.5 * one)  # two checkpoints fit, three do not
    reader = make_store(seaweedfs_module, tmp_path, prefix=writer.prefix.rstrip("/"), cache_max_bytes=limit)
    for version in (1, 2, 3):
        assert reader.load("1", version).metadata == {"round": version - 1}
    files = list(reader.cache.folder.glob("*.pt"))
    assert sum(path.stat().st_size for path in files) <= limit
    assert len(files) == 1, "pruned to 80% of the limit: only the newest download stays"
    assert reader.load("1", 3).metadata == {"round": 2}


def test_the_listing_is_reused_for_its_ttl(seaweedfs_module, tmp_path, monkeypatch) -> None:
    writer = make_store(seaweedfs_module, tmp_path)
    writer.save("1", network(), CLASSES, {"round": 1})
    clock = [1000.0]
    reader = make_store(
        seaweedfs_module, tmp_path, prefix=writer.prefix.rstrip("/"), list_ttl_s=30.0, clock=lambda: clock[0]
    )
    listings = []
    real_listing = reader._list_versions
    monkeypatch.setattr(reader, "_list_versions", lambda project: listings.append(project) or real_listing(project))
    cache = ModelCache(reader, SPEC, torch.device("cpu"))
    for _ in range(20):
        assert cache.get("1", CLASSES)[1] == 1
    assert len(listings) == 1, "twenty predictions, one listing"

    writer.save("1", network(), CLASSES, {"round": 2})
    clock[0] += 29.0
    assert cache.get("1", CLASSES)[1] == 1, "within the TTL the new version is not seen yet"
    clock[0] += 2.0
    assert cache.get("1", CLASSES)[1] == 2, "once the TTL has passed it is served"
    assert len(listings) == 2


def test_the_store_stopped_during_a_save_leaves_no_version(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    store = make_store(seaweedfs, tmp_path, client=seaweedfs.client(retries=0, timeout_s=3))
    reader = make_store(seaweedfs, tmp_path, prefix=store.prefix.rstrip("/"), list_ttl_s=0.0)
    store.save("1", network(), CLASSES, {"round": 1})
    assert reader.versions("1") == [1]
    real_put = store.client.put_object

    def put_then_crash(**request):
        if "/manifests/" in request["Key"]:
            seaweedfs.stop()  # the checkpoint is uploaded; the store dies before the manifest
        return real_put(**request)

    store.client.put_object = put_then_crash
    with pytest.raises(StoreUnavailable, match="no new version is visible"):
        store.save("1", network(), CLASSES, {"round": 2})
    assert reader.versions("1") == [1], "a reader that listed before goes on with that listing while it is down"
    with pytest.raises(StoreUnavailable, match="listing"):
        make_store(seaweedfs, tmp_path, prefix=store.prefix.rstrip("/"), client=seaweedfs.client(retries=0)).versions(
            "1"
        )

    seaweedfs.start()
    checkpoints = seaweedfs.keys(f"{store.prefix}1/checkpoints/")
    assert len(checkpoints) == 2, "the orphaned upload is there..."
    assert reader.versions("1") == [1], "...but it is no version"
    store.client.put_object = real_put
    assert store.save("1", network(), CLASSES, {"round": 3}) == 2
    assert reader.load("1", 2).metadata == {"round": 3}


def test_a_bucket_that_does_not_exist_has_no_versions(seaweedfs_module: SeaweedFS, tmp_path: Path) -> None:
    store = ObjectModelStore("s3://no-such-bucket-here/models", tmp_path, MB, 0.0, seaweedfs_module.client())
    assert store.versions("1") == [] and store.latest("1") == 0


def test_model_dir_picks_the_store(tmp_path: Path) -> None:
    assert isinstance(open_model_store(tmp_path / "models", tmp_path / "cache", MB, 5.0), ModelStore)
    store = open_model_store("s3://bucket/some/prefix/", tmp_path / "cache", MB, 5.0, client=object())
    assert isinstance(store, ObjectModelStore) and store.location == "s3://bucket/some/prefix"
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError, match="names no bucket"):
        parse_s3_url("s3:///prefix")
