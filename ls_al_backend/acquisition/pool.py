"""Pool statistics: the class-balance priors of a whole pool under one model version (PixBal's class prior,
ClassBal's dominant-class shares), kept with the version so that every image is weighted against the same pool."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ls_al_backend.acquisition.api import DEFAULT_CACHE, NO_SUPERPIXELS, AcquisitionConfig
from ls_al_backend.acquisition.balance import class_prior as pool_class_prior
from ls_al_backend.acquisition.balance import dominant_class_share
from ls_al_backend.acquisition.mc import MCSummary
from ls_al_backend.acquisition.reductions import region_class_counts
from ls_al_backend.acquisition.superpixels import SuperpixelCache


@dataclass(frozen=True)
class PoolStatistics:
    """Class-balance statistics of a pool under one model, kept with the model version so that every image is
    weighted against the same pool: PixBal's ``class_prior`` ``[C]`` (mean predicted class probabilities) and
    ClassBal's ``dominant_share`` ``[C]`` (share of regions predicted as each dominant class). Both sum to 1."""

    class_prior: torch.Tensor
    dominant_share: torch.Tensor
    images: int

    def as_scoring_arguments(self) -> dict[str, torch.Tensor]:
        """Keyword arguments of :func:`score_image`."""
        return {"class_prior": self.class_prior, "dominant_share": self.dominant_share}

    def to_dict(self) -> dict[str, Any]:
        return {
            "class_prior": self.class_prior.tolist(),
            "dominant_share": self.dominant_share.tolist(),
            "images": self.images,
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> PoolStatistics:
        return cls(
            torch.tensor(payload["class_prior"], dtype=torch.float32),
            torch.tensor(payload["dominant_share"], dtype=torch.float32),
            int(payload["images"]),
        )


def pool_statistics(
    scored: Iterable[tuple[MCSummary, np.ndarray]], config: AcquisitionConfig, cache: SuperpixelCache | None = None
) -> PoolStatistics:
    """:class:`PoolStatistics` of ``(MC summary, [H, W, 3] uint8 image)`` pairs of a pool. Regions are the
    config's superpixels (every pixel its own region when ``superpixel_method`` is ``none``)."""
    means, dominant = [], []
    for summary, image in scored:
        means.append(summary.mean)
        predicted = summary.image_predicted
        if config.superpixel_method == NO_SUPERPIXELS:
            dominant.append(predicted.reshape(-1).cpu())
            continue
        labels = (cache or DEFAULT_CACHE).get(
            image, config.superpixel_method, config.superpixel_size, config.superpixel_count
        )
        regions = torch.from_numpy(labels).to(predicted.device)
        dominant.append(region_class_counts(predicted, regions, summary.num_classes).argmax(dim=1).cpu())
    if not means:
        raise ValueError("pool_statistics needs at least one image")
    num_classes = means[0].shape[0]
    return PoolStatistics(
        pool_class_prior(means).cpu(), dominant_class_share(torch.cat(dominant), num_classes).cpu(), len(means)
    )
