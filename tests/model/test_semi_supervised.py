"""Mean-teacher pieces on hand-made tensors: EMA, confidence weighting, rare-class sampling, replay buffer, ClassMix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ls_al_backend.labeling.annotations import IGNORE
from ls_al_backend.model.semi_supervised import (
    BufferEntry,
    RareClassSampler,
    ReplayBuffer,
    class_mix,
    confidence_weighted_loss,
    confidence_weights,
    ema_update,
    pseudo_labels,
    ramped_momentum,
    strong_photometric,
)

# ------------------------------------------------------------------------------------------------------------- EMA


def tiny_module(value: float, batches_tracked: int) -> nn.Module:
    """Linear(1, 1) + BatchNorm1d(1) with every float entry set to ``value``."""
    module = nn.Sequential(nn.Linear(1, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            tensor.fill_(batches_tracked if name.endswith("num_batches_tracked") else value)
    return module


def test_ema_update_averages_weights_and_batchnorm_statistics_and_copies_the_batch_count() -> None:
    teacher, student = tiny_module(2.0, 0), tiny_module(6.0, 5)
    ema_update(teacher, student, momentum=0.75)
    state = teacher.state_dict()
    assert state["1.num_batches_tracked"].item() == 5
    for name in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
        assert state[name].item() == 3.0, name  # 0.75 * 2 + 0.25 * 6
    assert all(tensor.item() in (5, 6.0) for tensor in student.state_dict().values()), "the student is not touched"


def test_momentum_zero_copies_the_student_and_momentum_one_keeps_the_teacher() -> None:
    student = tiny_module(6.0, 5)
    copied, kept = tiny_module(2.0, 0), tiny_module(2.0, 0)
    ema_update(copied, student, momentum=0.0)
    ema_update(kept, student, momentum=1.0)
    assert all(torch.equal(copied.state_dict()[k], v) for k, v in student.state_dict().items())
    assert all(v.item() == 2.0 for k, v in kept.state_dict().items() if not k.endswith("num_batches_tracked"))


def test_the_momentum_ramps_up_to_its_setting() -> None:
    assert [ramped_momentum(step, 0.99) for step in range(4)] == [0.0, 0.5, pytest.approx(2 / 3), 0.75]
    assert ramped_momentum(99, 0.99) == pytest.approx(0.99) and ramped_momentum(10_000, 0.99) == 0.99


# ---------------------------------------------------------------------------------------------------- pseudo labels


def logits_for(confidences: list[list[float]], classes: list[list[int]]) -> torch.Tensor:
    """``[B, 2, 1, W]`` logits whose softmax puts probability p on the given class."""
    p = torch.tensor(confidences, dtype=torch.float64)
    label = torch.tensor(classes)
    margin = torch.log(p / (1 - p))
    logits = torch.zeros(p.shape[0], 2, 1, p.shape[1], dtype=torch.float64)
    logits[:, 1, 0] = torch.where(label == 1, margin, -margin)
    return logits


def test_pseudo_labels_are_the_teachers_argmax_and_confidence_with_nothing_on_padding() -> None:
    logits = logits_for([[0.99, 0.6, 0.8]], [[1, 0, 1]])
    valid = torch.tensor([[[True, True, False]]])
    labels, confidence = pseudo_labels(logits, valid)
    assert labels.tolist() == [[[1, 0, IGNORE]]]
    assert confidence[0, 0].tolist() == pytest.approx([0.99, 0.6, 0.0])


def test_pixels_weigh_their_confidence_times_the_confident_share_of_their_image() -> None:
    # image 0: 3 pseudo-labelled pixels, 2 of them above 0.97, and one padding pixel; image 1: nothing confident
    logits = logits_for([[0.99, 0.98, 0.6, 0.9], [0.9, 0.8, 0.97, 0.5]], [[1, 0, 1, 0], [0, 1, 1, 0]])
    valid = torch.tensor([[[True, True, True, False]], [[True, True, True, True]]])
    labels, confidence = pseudo_labels(logits, valid)
    weights, share = confidence_weights(labels, confidence, threshold=0.97)
    assert share.tolist() == pytest.approx([2 / 3, 0.0])
    assert weights[0, 0].tolist() == pytest.approx([0.99 * 2 / 3, 0.98 * 2 / 3, 0.6 * 2 / 3, 0.0])
    assert weights[1].abs().sum() == 0, "p = 0.97 is not above the threshold"


def test_the_loss_is_the_weighted_cross_entropy_and_an_unconfident_image_contributes_nothing() -> None:
    teacher = logits_for([[0.99, 0.98, 0.6], [0.9, 0.8, 0.5]], [[1, 0, 1], [0, 1, 1]])
    labels, confidence = pseudo_labels(teacher, torch.ones(2, 1, 3, dtype=torch.bool))
    student = torch.randn(2, 2, 1, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss, share = confidence_weighted_loss(student, labels, confidence, threshold=0.97)

    cross_entropy = -torch.log_softmax(student[0].detach(), dim=0).gather(0, labels[0][None])[0]
    expected = (confidence[0] * (2 / 3) * cross_entropy).sum() / 3 / 2  # mean over the pixels, then the 2 images
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert share.tolist() == pytest.approx([2 / 3, 0.0])
    loss.backward()
    assert student.grad[1].abs().sum() == 0 and student.grad[0].abs().sum() > 0


def test_strong_augmentation_changes_colours_reproducibly_but_moves_no_pixel() -> None:
    flat = torch.full((4, 3, 32, 32), 0.3)  # one colour everywhere: only a geometric change could vary it
    first = strong_photometric(flat, np.random.default_rng(1))
    again = strong_photometric(flat, np.random.default_rng(1))
    assert torch.equal(first, again) and first.shape == flat.shape
    assert not torch.allclose(first, flat), "some image got jittered"
    assert float((first - first.mean(dim=(2, 3), keepdim=True)).abs().max()) < 1e-5


# ------------------------------------------------------------------------------------------------------- sampling


def test_rare_classes_are_drawn_more_often_and_absent_classes_as_often_as_the_rarest() -> None:
    sampler = RareClassSampler([900, 100, 0], alpha=1.0)  # shares 0.9 and 0.1; class 2 never labelled
    weights = np.array([1 / 0.9, 1 / 0.1, 1 / 0.1])
    assert sampler.probabilities() == pytest.approx(weights / weights.sum())
    rng = np.random.default_rng(0)
    draws = np.bincount([sampler.sample(rng) for _ in range(3000)], minlength=3)
    assert draws[1] > 5 * draws[0] and draws[2] > 5 * draws[0]
    assert {sampler.sample(rng, allowed=np.array([True, False, False])) for _ in range(20)} == {0}


def test_the_rarity_power_softens_the_bias_and_no_labels_sample_uniformly() -> None:
    assert RareClassSampler([900, 100], alpha=0.0).probabilities() == pytest.approx([0.5, 0.5])
    half = RareClassSampler([900, 100], alpha=0.5).probabilities()
    assert half[1] / half[0] == pytest.approx(3.0)  # sqrt(0.9 / 0.1)
    assert RareClassSampler([0, 0, 0, 0]).probabilities() == pytest.approx([0.25] * 4)
    with pytest.raises(ValueError, match="no class"):
        RareClassSampler([1, 1]).probabilities(allowed=np.array([False, False]))


# ---------------------------------------------------------------------------------------------- buffer and mixing


def crop(value: float, labels: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    label_map = torch.tensor(labels)
    image = torch.full((3, *label_map.shape), value)
    return image, label_map, torch.full(label_map.shape, value / 10)


def test_the_replay_buffer_keeps_the_most_recent_crops_up_to_its_capacity() -> None:
    buffer = ReplayBuffer(capacity=3, num_classes=4)
    for index in range(5):
        buffer.add(*crop(float(index), [[index % 4, IGNORE]]))
    assert len(buffer) == 3
    assert [entry.image[0, 0, 0].item() for entry in buffer.entries] == [2.0, 3.0, 4.0], "the oldest leave first"
    assert buffer.classes_present().tolist() == [True, False, True, True]  # 2, 3, 4 % 4
    rng = np.random.default_rng(0)
    assert all(buffer.sample_containing(3, rng).labels[0, 0] == 3 for _ in range(5))
    with pytest.raises(ValueError, match="class 1"):
        buffer.sample_containing(1, rng)


def test_classmix_pastes_the_source_pixels_of_the_class_exactly_and_nothing_else() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(3, 4, 5, generator=generator)
    labels = torch.randint(0, 3, (4, 5), generator=generator)
    confidence = torch.rand(4, 5, generator=generator)
    source_labels = torch.tensor([[2, 2, 0, 1, 2], [0, 2, 2, 1, 1], [1, 1, 0, 0, 2], [2, 0, 0, 0, 0]])
    source = BufferEntry(
        torch.randn(3, 4, 5, generator=generator), source_labels, torch.rand(4, 5, generator=generator), np.ones(3)
    )
    mixed_image, mixed_labels, mixed_confidence = class_mix(image, labels, confidence, source, class_id=2)

    pasted = source_labels == 2
    assert torch.equal(mixed_image[:, pasted], source.image[:, pasted])
    assert (mixed_labels[pasted] == 2).all() and torch.equal(mixed_confidence[pasted], source.confidence[pasted])
    assert torch.equal(mixed_image[:, ~pasted], image[:, ~pasted])
    assert torch.equal(mixed_labels[~pasted], labels[~pasted])
    assert torch.equal(mixed_confidence[~pasted], confidence[~pasted])
    assert not torch.equal(mixed_image, image), "the inputs are not modified in place"


def test_classmix_of_crops_of_other_sizes_aligns_their_top_left_corners() -> None:
    image, labels, confidence = crop(0.0, [[0, 0, 0], [0, 0, 0]])
    source = BufferEntry(*crop(1.0, [[1, 0], [1, 1], [1, 1]]), np.ones(2))
    _, mixed_labels, mixed_confidence = class_mix(image, labels, confidence, source, class_id=1)
    assert mixed_labels.tolist() == [[1, 0, 0], [1, 1, 0]]
    assert torch.equal(mixed_confidence, torch.where(mixed_labels == 1, torch.tensor(0.1), 0.0))
