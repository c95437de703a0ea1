"""mIoU and per-class IoU on a hand-made case."""

from __future__ import annotations

import numpy as np
import pytest

from ls_al_backend.labeling.annotations import IGNORE
from ls_al_backend.simulation import (
    confusion_matrix,
    iou_per_class,
    mean_iou,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_iou_against_a_hand_made_case():
    gt = np.array([[0, 0, 1], [1, IGNORE, 2]])
    predicted = np.array([[0, 1, 1], [1, 0, 0]])
    confusion = confusion_matrix(predicted, gt, num_classes=4)
    assert confusion.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    ious = iou_per_class(confusion)
    assert ious[:3] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert np.isnan(ious[3])  # absent from ground truth and prediction: left out of the mean
    assert mean_iou(confusion) == pytest.approx(1 / 3)
