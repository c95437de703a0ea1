"""Pool statistics: priors that sum to one, survive the checkpoint's JSON, and need at least one image."""

from __future__ import annotations

import json

import pytest
import torch

from ls_al_backend.acquisition import AcquisitionConfig
from ls_al_backend.acquisition.pool import PoolStatistics, pool_statistics
from tests.acquisition.test_api import half_uncertain


def test_pool_statistics_sum_to_one_and_survive_a_round_trip() -> None:
    summary, image = half_uncertain()
    config = AcquisitionConfig(superpixel_size=8)
    statistics = pool_statistics([(summary, image), (summary, image)], config)
    assert statistics.images == 2
    assert float(statistics.class_prior.sum()) == pytest.approx(1.0)
    assert float(statistics.dominant_share.sum()) == pytest.approx(1.0)
    again = PoolStatistics.from_dict(json.loads(json.dumps(statistics.to_dict())))
    assert torch.allclose(again.class_prior, statistics.class_prior)
    assert torch.equal(again.dominant_share, statistics.dominant_share) and again.images == 2
    with pytest.raises(ValueError, match="at least one image"):
        pool_statistics([], config)
