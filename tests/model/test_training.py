"""The training loop on real CamVid crops (64x64): it learns, it is reproducible, it returns an eval-mode network."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ls_al_backend.labeling.annotations import IGNORE, LabelTarget
from ls_al_backend.model.batches import Item, TrainingSample
from ls_al_backend.model.inference import to_tensor
from ls_al_backend.model.losses import partial_cross_entropy
from ls_al_backend.model.network import NetworkSpec, build_network
from ls_al_backend.model.train_config import TrainConfig
from ls_al_backend.model.training import Losses, train
from tests.conftest import camvid_training_pairs

SPEC = NetworkSpec("Unet", "timm-tf_efficientnet_lite0", num_classes=11, head_dropout=0.1)
SIZE = 64
CPU = torch.device("cpu")
FAST = TrainConfig(epochs=2, batch_size=2, lr=1e-3, crop_size=64, seed=0)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def camvid() -> list[tuple[np.ndarray, np.ndarray]]:
    """Six CamVid training images and masks at 64x64; void is IGNORE."""
    return camvid_training_pairs(SIZE, every=40, count=6)


def dense_samples(camvid, count: int) -> list[TrainingSample]:
    return [TrainingSample(i, image, LabelTarget(labels)) for i, (image, labels) in enumerate(camvid[:count])]


def sparse_samples(camvid, count: int, points: int = 5) -> list[TrainingSample]:
    """Only ``points`` labelled pixels per image, drawn from the ground truth."""
    rng = np.random.default_rng(3)
    samples = []
    for i, (image, labels) in enumerate(camvid[:count]):
        sparse = np.full_like(labels, IGNORE)
        rows, cols = np.nonzero(labels != IGNORE)
        pick = rng.choice(rows.size, points, replace=False)
        sparse[rows[pick], cols[pick]] = labels[rows[pick], cols[pick]]
        samples.append(TrainingSample(i, image, LabelTarget(sparse)))
    return samples


def multiclass_samples(camvid, count: int, block: int = 16) -> list[TrainingSample]:
    """Every other 16x16 block is an annotated region whose candidates are the classes present in it."""
    samples = []
    for i, (image, labels) in enumerate(camvid[:count]):
        region_ids = np.full_like(labels, -1)
        candidate_rows = []
        for top in range(0, SIZE, block):
            for left in range(0, SIZE, block):
                if (top // block + left // block) % 2:
                    continue
                present = np.unique(labels[top : top + block, left : left + block])
                present = present[present != IGNORE]
                if present.size == 0:
                    continue
                region_ids[top : top + block, left : left + block] = len(candidate_rows)
                candidate_rows.append(np.isin(np.arange(SPEC.num_classes), present))
        candidates = np.array(candidate_rows, dtype=bool)
        single = np.full_like(labels, IGNORE)
        for row in np.flatnonzero(candidates.sum(axis=1) == 1):
            single[region_ids == row] = np.flatnonzero(candidates[row])[0]
        samples.append(TrainingSample(i, image, LabelTarget(single, region_ids, candidates)))
    return samples


def loss_on(net, samples: list[TrainingSample]) -> float:
    """Cross entropy of an eval-mode network on the labelled pixels of whole, un-augmented images."""
    net.eval()
    with torch.no_grad():
        images = torch.stack([to_tensor(s.image) for s in samples])
        labels = torch.stack([torch.from_numpy(s.target.labels) for s in samples])
        return partial_cross_entropy(net(images), labels).item()


def test_training_on_dense_labels_lowers_the_loss_and_returns_an_eval_mode_network(camvid) -> None:
    samples = dense_samples(camvid, 4)
    net = build_network(SPEC, seed=0)
    before = loss_on(net, samples)
    config = TrainConfig(epochs=6, batch_size=2, lr=1e-3, crop_size=64, seed=0)
    result = train(net, samples, config, CPU)
    assert result.net is net
    assert not net.training and not any(module.training for module in net.modules()), "BatchNorm must be in eval"
    assert loss_on(net, samples) < 0.8 * before
    metrics = result.metrics
    assert metrics["epochs_run"] == 6 and len(metrics["train_loss"]) == 6
    assert metrics["val_loss"] == [None] * 6 and "no hold-out" in metrics["validation"]
    assert metrics["labelled_pixels"] == sum(int((s.target.labels != IGNORE).sum()) for s in samples)
    assert sum(metrics["label_counts"]) == metrics["labelled_pixels"] and len(metrics["label_counts"]) == 11
    assert metrics["device"] == "cpu" and metrics["precision"] in {"fp32", "bf16"}
    assert metrics["steps"] == 6 * 2, "6 epochs of 4 samples in batches of 2"


def test_training_on_a_few_labelled_pixels_fits_them(camvid) -> None:
    samples = sparse_samples(camvid, 4, points=5)
    net = build_network(SPEC, seed=0)
    before = loss_on(net, samples)
    config = TrainConfig(epochs=4, batch_size=2, lr=1e-3, crop_size=64, scale=(1.0, 1.0), seed=0)
    result = train(
        net,
        samples,
        config,
        CPU,
    )
    assert result.metrics["labelled_pixels"] == 20
    assert loss_on(net, samples) < before


def test_the_same_seed_gives_the_same_weights_and_another_seed_does_not(camvid) -> None:
    samples = dense_samples(camvid, 2)

    def weights(seed: int) -> dict[str, torch.Tensor]:
        config = TrainConfig(epochs=1, batch_size=1, lr=1e-3, crop_size=64, seed=seed)
        return train(build_network(SPEC, seed=0), samples, config, CPU).net.state_dict()

    first, again, other = weights(0), weights(0), weights(1)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_five_samples_hold_one_out_and_the_best_epoch_is_restored(camvid) -> None:
    samples = dense_samples(camvid, 5)
    reports: list[dict] = []
    config = TrainConfig(epochs=3, batch_size=2, lr=1e-2, crop_size=64, patience=1, val_fraction=0.2, seed=0)
    result = train(build_network(SPEC, seed=0), samples, config, CPU, progress=reports.append)
    metrics = result.metrics
    assert metrics["train_samples"] == 4 and metrics["val_samples"] == 1
    val_loss = metrics["val_loss"]
    assert all(isinstance(loss, float) for loss in val_loss)
    assert metrics["best_epoch"] == int(np.argmin(val_loss)) + 1
    held_out = [s for s in samples if s.task_id in metrics["val_task_ids"]]
    assert loss_on(result.net, held_out) == pytest.approx(min(val_loss), rel=1e-4), "best weights are restored"
    assert [r["epoch"] for r in reports] == list(range(1, metrics["epochs_run"] + 1))
    assert all(r["stage"] == "train" and r["epochs"] == 3 for r in reports)
    assert [r["val_loss"] for r in reports] == val_loss and [r["loss"] for r in reports] == metrics["train_loss"]


def test_multiclass_mode_runs_both_stages(camvid) -> None:
    samples = multiclass_samples(camvid, 5)
    assert any(s.target.candidates.sum(axis=1).max() >= 2 for s in samples), "the case needs multi-class regions"
    config = TrainConfig(
        epochs=1, stage2_epochs=1, batch_size=2, crop_size=64, expand_radius=4, val_fraction=0.2, seed=0
    )
    result = train(build_network(SPEC, seed=0), samples, config, CPU, partial_labels=True)
    metrics = result.metrics
    assert metrics["stage1_epochs"] == 1 and metrics["stage2_epochs"] == 1 and metrics["epochs_run"] == 2
    assert metrics["val_samples"] == 1 and all(np.isfinite(metrics["val_loss"]))
    region_pixels = [int((s.target.region_ids >= 0).sum()) for s in samples]
    assert metrics["labelled_pixels"] == sum(region_pixels)
    train_region_pixels = sum(
        n for s, n in zip(samples, region_pixels, strict=True) if s.task_id not in metrics["val_task_ids"]
    )
    assert metrics["pseudo_labelled_pixels"] >= train_region_pixels, "every region pixel gets a pseudo label"
    assert all(np.isfinite(metrics["train_loss"]))
    assert not result.net.training


def test_each_class_weighting_sets_the_loss_weights() -> None:
    labels = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1]])  # class 1 is 7 times rarer than class 0
    items = [Item(torch.zeros(3, 2, 4), labels, None, None)]

    def ratio(weighting: str) -> float | None:
        weights = Losses(TrainConfig(class_weighting=weighting), 2, CPU).weights(items)
        return None if weights is None else round(float(weights[1] / weights[0]), 4)

    assert ratio("none") is None
    assert ratio("inverse_frequency") == 7.0
    assert ratio("inverse_sqrt_frequency") == round(7**0.5, 4)


@pytest.mark.parametrize("weighting", ["inverse_frequency", "inverse_sqrt_frequency"])
def test_class_weighting_trains_too(camvid, weighting: str) -> None:
    config = TrainConfig(epochs=1, batch_size=2, crop_size=64, class_weighting=weighting)
    metrics = train(build_network(SPEC, seed=0), dense_samples(camvid, 2), config, CPU).metrics
    assert np.isfinite(metrics["train_loss"][0])


def test_nothing_to_train_on_is_refused(camvid) -> None:
    with pytest.raises(ValueError, match="no labelled pixels"):
        train(build_network(SPEC, seed=0), [], FAST, CPU)
    image = camvid[0][0]
    unlabelled = TrainingSample(1, image, LabelTarget(np.full((SIZE, SIZE), IGNORE)))
    with pytest.raises(ValueError, match="no labelled pixels"):
        train(build_network(SPEC, seed=0), [unlabelled], FAST, CPU)


def test_labels_outside_the_network_classes_are_refused(camvid) -> None:
    image, labels = camvid[0]
    bad = TrainingSample(1, image, LabelTarget(np.where(labels == IGNORE, IGNORE, 11)))
    with pytest.raises(ValueError, match="labels outside"):
        train(build_network(SPEC, seed=0), [bad], FAST, CPU)


def counted_batches(camvid, count: int, **options) -> list[int]:
    """Batch sizes the network trained on for ``count`` dense samples and ``TrainConfig(**options)``."""
    seen: list[int] = []
    net = build_network(SPEC, seed=0)
    original_forward = net.forward

    def counting_forward(images):
        if net.training:
            seen.append(images.shape[0])
        return original_forward(images)

    net.forward = counting_forward
    metrics = train(net, dense_samples(camvid, count), TrainConfig(crop_size=64, seed=0, **options), CPU).metrics
    assert metrics["steps"] == len(seen)
    return seen


def test_every_label_trains_by_default_with_one_pass_per_epoch(camvid) -> None:
    assert TrainConfig().val_fraction == 0.0
    batches = counted_batches(camvid, 5, epochs=2, batch_size=2)
    assert batches == [2, 2, 2] * 2, "all 5 samples, no hold-out; the last batch is filled from the next pass"


def test_min_steps_makes_few_samples_train_further_passes(camvid) -> None:
    assert counted_batches(camvid, 3, epochs=2, batch_size=2, min_steps=6) == [2] * 6, "3 steps per epoch, not 2"
    assert counted_batches(camvid, 6, epochs=1, batch_size=2, min_steps=2) == [2] * 3, "more samples: one pass"


def test_steps_per_epoch_fixes_the_batches_of_every_epoch(camvid) -> None:
    def batch_sizes(count: int, steps: int) -> list[int]:
        return counted_batches(camvid, count, epochs=2, batch_size=2, steps_per_epoch=steps)

    assert batch_sizes(6, steps=2) == [2] * 4, "a random subset: 2 batches of 2 per epoch, not 3"
    assert batch_sizes(3, steps=3) == [2] * 6, "3 samples, 3 batches of 2: a second pass fills the epoch"


# ---------------------------------------------------------------------------------------------------- mean teacher

#: Threshold 0: every pixel counts as confident, so the untrained teacher's pseudo labels carry weight.
MEAN_TEACHER = TrainConfig(
    epochs=1, batch_size=1, crop_size=64, seed=0, semi_supervised="mean_teacher", confidence_threshold=0.0
)


def unlabelled_images(camvid) -> list[np.ndarray]:
    return [image for image, _ in camvid[2:5]]


def test_mean_teacher_returns_an_eval_mode_teacher_apart_from_the_student_reproducibly(camvid) -> None:
    samples = dense_samples(camvid, 2)

    def run():
        net = build_network(SPEC, seed=0)
        return net, train(net, samples, MEAN_TEACHER, CPU, unlabelled=unlabelled_images(camvid))

    student, result = run()
    teacher = result.net
    assert teacher is not student and not any(module.training for module in teacher.modules())
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    assert not all(torch.equal(teacher_state[name], student_state[name]) for name in teacher_state)
    metrics = result.metrics
    assert metrics["semi_supervised"] == "mean_teacher" and metrics["unlabelled_images"] == 3
    assert len(metrics["unsupervised_loss"]) == 1 and metrics["unsupervised_loss"][0] > 0
    assert metrics["confident_share"] == [1.0]
    _, again = run()
    assert all(torch.equal(teacher_state[name], value) for name, value in again.net.state_dict().items())
    assert again.metrics["unsupervised_loss"] == metrics["unsupervised_loss"]


def test_with_momentum_zero_the_teacher_is_the_last_student(camvid) -> None:
    net = build_network(SPEC, seed=0)
    config = dataclasses.replace(MEAN_TEACHER, ema_momentum=0.0, classmix=False)
    result = train(net, dense_samples(camvid, 2), config, CPU, unlabelled=unlabelled_images(camvid))
    assert result.net is not net
    assert all(torch.equal(value, net.state_dict()[name]) for name, value in result.net.state_dict().items())


def test_early_stopping_evaluates_and_restores_the_teacher(camvid) -> None:
    samples = dense_samples(camvid, 5)
    config = dataclasses.replace(MEAN_TEACHER, epochs=2, batch_size=2, lr=1e-2, patience=1, val_fraction=0.2)
    result = train(build_network(SPEC, seed=0), samples, config, CPU, unlabelled=unlabelled_images(camvid))
    val_loss = result.metrics["val_loss"]
    assert result.metrics["val_samples"] == 1 and result.metrics["best_epoch"] == int(np.argmin(val_loss)) + 1
    held_out = [s for s in samples if s.task_id in result.metrics["val_task_ids"]]
    assert loss_on(result.net, held_out) == pytest.approx(min(val_loss), rel=1e-4)


def test_mean_teacher_in_multiclass_mode_runs_both_stages(camvid) -> None:
    config = dataclasses.replace(MEAN_TEACHER, batch_size=2, stage2_epochs=1, expand_radius=4)
    net = build_network(SPEC, seed=0)
    result = train(net, multiclass_samples(camvid, 2), config, CPU, partial_labels=True, unlabelled=[camvid[4][0]])
    metrics = result.metrics
    assert metrics["stage1_epochs"] == 1 and metrics["stage2_epochs"] == 1
    assert len(metrics["unsupervised_loss"]) == 2 and all(loss > 0 for loss in metrics["unsupervised_loss"])
    assert result.net is not net and not result.net.training


def test_mean_teacher_without_unlabelled_images_is_refused(camvid) -> None:
    samples = dense_samples(camvid, 1)
    for unlabelled in (None, []):
        with pytest.raises(ValueError, match="needs unlabelled images"):
            train(build_network(SPEC, seed=0), samples, MEAN_TEACHER, CPU, unlabelled=unlabelled)
    with pytest.raises(ValueError, match="unlabelled image 0"):
        train(build_network(SPEC, seed=0), samples, MEAN_TEACHER, CPU, unlabelled=[camvid[0][1]])
