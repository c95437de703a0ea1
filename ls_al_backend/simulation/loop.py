"""The active-learning loop: score the pool, select under a budget, reveal to the annotator, train, evaluate.

The loop runs exactly the server's code path: :func:`~ls_al_backend.model.inference.mc_dropout` and
:func:`~ls_al_backend.acquisition.api.score_image` score every unlabelled unit of the pool, a greedy selection picks
across the whole pool under a budget (clicks by default, or labelled pixels with ``budget_unit="pixels"``), and
:func:`~ls_al_backend.model.training.train` trains on :class:`~ls_al_backend.labeling.annotations.LabelTarget` s.

Round 0, and every round of a ``random`` heuristic or a ``random`` task order, takes units in a uniform random
order until one does not fit the budget (skipping it for a cheaper one would favour cheap units); every other round
scores with the current model and visits by decreasing score / estimated cost, taking what fits (Cai et al.'s
greedy knapsack), except whole images, which are taken in score order until one does not fit, as an annotator
follows the queue. Each unit is charged what the simulated annotator really spends on it
(:mod:`ls_al_backend.simulation.annotator`), and what a round leaves of its budget carries over to the next, so
every run spends the same clicks in all.
Results and the state needed to resume are written after every round (:mod:`ls_al_backend.simulation.state`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ls_al_backend.acquisition.api import AcquisitionConfig, score_image
from ls_al_backend.acquisition.pool import pool_statistics
from ls_al_backend.acquisition.reductions import PIXEL_SELECTORS
from ls_al_backend.acquisition.superpixels import SuperpixelCache
from ls_al_backend.model.batches import TrainingSample
from ls_al_backend.model.inference import mc_dropout
from ls_al_backend.model.network import SegmentationNet, build_network, select_device
from ls_al_backend.model.precision import resolve_precision
from ls_al_backend.model.train_config import TrainConfig
from ls_al_backend.model.training import train
from ls_al_backend.modes import ImageLabels, Unit
from ls_al_backend.simulation.annotator import build_target, editor_actions
from ls_al_backend.simulation.config import SimulationConfig, derive_seed
from ls_al_backend.simulation.data import load_masks, load_split
from ls_al_backend.simulation.metrics import evaluate, iou_per_class, mean_iou
from ls_al_backend.simulation.output import json_value, log_line, progress_bar, training_progress
from ls_al_backend.simulation.selection import Candidates, select_within_budget
from ls_al_backend.simulation.state import RunFolder


class Simulation:
    """A resumable run of :class:`SimulationConfig`; :meth:`run` returns the rows of every finished round."""

    def __init__(self, config: SimulationConfig, log: Callable[[str], None] | None = log_line):
        self.config = config
        self.log = log or (lambda _line: None)
        self.out = Path(config.out_dir)
        self.folder = RunFolder(config)
        self.device = select_device(config.device)
        self.pool = load_split(config.pool_dir, config.resolution, config.ignore_index, config.pool_limit)
        self.eval = load_split(config.eval_dir, config.resolution, config.ignore_index, config.eval_limit)
        # the masks whole images are outlined on, when the annotator sees them larger than the network
        self.outlined = (
            None
            if config.outline_resolution is None
            else load_masks(config.pool_dir, config.outline_resolution, config.ignore_index, config.pool_limit)
        )
        self.cache = SuperpixelCache(max_items=len(self.pool) + 16)
        self.revealed = [ImageLabels() for _ in self.pool]
        self.total_pixels = sum(example.gt.size for example in self.pool)
        self.precision = resolve_precision(self.device, config.precision)
        self.handler = config.handler
        self._unit_clicks: dict[int, np.ndarray] = {}

    # --- superpixels and costs ---

    def superpixels(self, index: int) -> np.ndarray:
        """The image's superpixels under the acquisition's settings (SLIC when its method is ``none``), cached."""
        acquisition = self.config.acquisition_config(0)
        method = "slic" if acquisition.superpixel_method == "none" else acquisition.superpixel_method
        return self.cache.get(self.pool[index].image, method, acquisition.superpixel_size, acquisition.superpixel_count)

    # --- scoring and selection ---

    def _mc_summary(self, net: SegmentationNet, index: int, round_index: int):
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(derive_seed(self.config.seed, "mc", round_index, index) % (2**63))
            return mc_dropout(
                net,
                self.pool[index].image,
                self.config.mc_samples,
                max_side=self.config.resolution,
                mc_scale=self.config.mc_resolution,
                precision=self.precision,
            )

    def _pool_statistics(
        self, net: SegmentationNet, round_index: int, acquisition: AcquisitionConfig
    ) -> dict[str, torch.Tensor]:
        """The server's pool statistics (:func:`~ls_al_backend.acquisition.pool.pool_statistics`) for class
        balancing: a first MC pass over the pool, reproduced exactly by the second."""
        if acquisition.class_balance == "none":
            return {}
        scored = ((self._mc_summary(net, i, round_index), self.pool[i].image) for i in range(len(self.pool)))
        return pool_statistics(scored, acquisition, cache=self.cache).as_scoring_arguments()

    def _candidates(self, net: SegmentationNet, round_index: int, budget: float, random_order: bool) -> Candidates:
        """Every unlabelled unit with its score and costs. With ``random_order`` (round 0, the random baselines and
        ``task_order="random"``) the model is not consulted: the selection visits units in a uniform random order."""
        config, unit = self.config, self.handler.unit
        acquisition = config.acquisition_config(round_index)
        statistics = {} if random_order else self._pool_statistics(net, round_index, acquisition)
        found = Candidates()
        for index, example in enumerate(self.pool):
            progress_bar("sampling" if random_order else "scoring", index + 1, len(self.pool))
            if unit is Unit.IMAGE and self.revealed[index].dense:
                continue
            scores = None
            if not random_order:
                summary = self._mc_summary(net, index, round_index)
                scores = score_image(summary, example.image, acquisition, cache=self.cache, **statistics)
            if unit is Unit.IMAGE:
                clicks = float(self.unit_clicks(index)[0])
                units, unit_scores, estimated, unit_clicks = (
                    [0],
                    [0.0 if scores is None else scores.image_score],
                    [1.0],  # ranked by score alone, as the product's queue orders tasks
                    [clicks],
                )
            elif unit is Unit.PIXEL:
                units, unit_scores = self._pixel_candidates(index, scores, acquisition, budget)
                estimated = unit_clicks = [1.0] * len(units)
            else:
                units, unit_scores, estimated, unit_clicks = self._region_candidates(index, scores)
            charges = unit_clicks if config.budget_unit == "clicks" else self._pixel_counts(index, units)
            found.extend(index, units, unit_scores, estimated, unit_clicks, charges)
        return found

    def unit_clicks(self, index: int) -> np.ndarray:
        """Clicks of each query unit of pool image ``index`` (an image or its superpixels; the handler's
        ``unit_clicks``), cached."""
        if index not in self._unit_clicks:
            superpixels = self.superpixels(index) if self.handler.unit is Unit.REGION else None
            gt = self.pool[index].gt if self.outlined is None else self.outlined[index]
            self._unit_clicks[index] = self.handler.unit_clicks(
                gt, superpixels, self.config.num_classes, self.config.boundary_erosion
            )
        return self._unit_clicks[index]

    def full_annotation_clicks(self) -> float:
        """Clicks that labelling the whole pool costs under this mode's cost model: every unit of every image
        (every image traced, every superpixel answered, or every pixel clicked)."""
        if self.handler.unit is Unit.PIXEL:  # one click per pixel; not worth an array per image
            return float(self.total_pixels)
        return float(sum(self.unit_clicks(i).sum() for i in range(len(self.pool))))

    def _pixel_counts(self, index: int, units: list[int]) -> list[float]:
        """Pixels each unit of pool image ``index`` labels: the image, a superpixel or 1."""
        if self.handler.unit is Unit.IMAGE:
            return [float(self.pool[index].gt.size)] * len(units)
        if self.handler.unit is Unit.PIXEL:
            return [1.0] * len(units)
        sizes = np.bincount(self.superpixels(index).ravel())
        return [float(sizes[unit]) for unit in units]

    def _region_candidates(self, index: int, scores: Any) -> tuple[list[int], list[float], list[float], list[float]]:
        """Unlabelled regions of image ``index``: scores (0 without a model), the engine's cost estimate (the
        annotator's clicks without a model) and the annotator's clicks (1, or one per class ticked)."""
        count = int(self.superpixels(index).max() + 1)
        clicks = torch.from_numpy(self.unit_clicks(index).astype(np.float32))
        estimated = clicks if scores is None else scores.region_costs.detach().cpu().float()
        unit_scores = torch.zeros(count) if scores is None else scores.region_scores.detach().cpu()
        labelled = set(self.revealed[index].regions)
        keep = [region for region in range(count) if region not in labelled]
        return keep, unit_scores[keep].tolist(), estimated[keep].tolist(), clicks[keep].tolist()

    def _pixel_candidates(
        self, index: int, scores: Any, acquisition: AcquisitionConfig, budget: float
    ) -> tuple[list[int], list[float]]:
        """Flat pixel indices of image ``index`` and their scores: without a model every unlabelled pixel (scored
        0, the selection's random order decides), else the engine's pixel selector over the class-balanced score
        map, at most ``budget`` per image."""
        height, width = self.pool[index].gt.shape
        if scores is None:  # a uniform sample of the unlabelled pixels; the selection's random order decides
            taken = np.array([row * width + col for row, col in self.revealed[index].pixels], dtype=np.int64)
            free = np.setdiff1d(np.arange(height * width), taken)
            rng = np.random.default_rng(derive_seed(self.config.seed, "random_pixels", index, acquisition.seed))
            units = rng.choice(free, size=min(int(budget), free.size), replace=False).tolist()
            return units, [0.0] * len(units)
        score_map = scores.score_map if scores.weight_map is None else scores.score_map * scores.weight_map
        score_map = score_map.detach().cpu().to(torch.float64).clone()
        for row, col in self.revealed[index].pixels:
            score_map[row, col] = -math.inf
        selector, fraction = PIXEL_SELECTORS[acquisition.pixel_selection], acquisition.top_fraction
        generator = torch.Generator().manual_seed(derive_seed(self.config.seed, "pixels", index, acquisition.seed))
        coords, values = selector(score_map, int(budget), fraction, generator=generator)
        keep = torch.isfinite(values)
        flat = (coords[keep, 0] * width + coords[keep, 1]).tolist()
        return flat, values[keep].tolist()

    def _select(self, units: Candidates, budget: float, round_index: int, random_order: bool) -> list[int]:
        """Positions of the units this round takes under ``budget`` (:func:`.selection.select_within_budget`):
        random units and whole images while they fit, scored regions and pixels by Cai et al.'s greedy knapsack."""
        generator = torch.Generator().manual_seed(derive_seed(self.config.seed, "select", round_index) % (2**63))
        return select_within_budget(
            units,
            budget,
            self.config.acquisition_config(round_index),
            generator,
            random_order,
            in_queue_order=self.handler.unit is Unit.IMAGE,
            max_units_per_image=self.config.max_units_per_image,
        )

    def _reveal(self, units: Candidates, chosen: list[int]) -> float:
        """Reveal the chosen units to the annotator; returns the clicks spent."""
        clicks = 0.0
        for position in chosen:
            index, unit = units.images[position], units.units[position]
            revealed = self.revealed[index]
            if self.handler.unit is Unit.IMAGE:
                revealed.dense = True
            elif self.handler.unit is Unit.PIXEL:
                width = self.pool[index].gt.shape[1]
                revealed.pixels.append((unit // width, unit % width))
            else:
                revealed.regions.append(unit)
            clicks += units.clicks[position]
        return clicks

    # --- training ---

    def targets(self) -> tuple[list[TrainingSample], int, int, int]:
        """Training samples from everything revealed, the labelled pixels, the annotator's clicks and the queries
        it answered."""
        samples, pixels, annotator, queries = [], 0, 0, 0
        for index, example in enumerate(self.pool):
            revealed = self.revealed[index]
            if not (revealed.dense or revealed.regions or revealed.pixels):
                continue
            regions = self.superpixels(index) if revealed.regions else None
            target, clicks, answered = build_target(
                example,
                revealed,
                regions,
                self.config.query_mode,
                self.config.num_classes,
                self.config.boundary_erosion,
                None if self.outlined is None else self.outlined[index],
            )
            annotator += clicks
            queries += answered
            if target.labelled_pixels > 0:
                pixels += target.labelled_pixels
                samples.append(TrainingSample(index, example.image, target))
        return samples, pixels, annotator, queries

    def _train(self, net: SegmentationNet | None, train_config: TrainConfig, samples: list[TrainingSample]):
        """Train ``net`` (None: a fresh seeded ImageNet network) on ``samples`` by ``train_config``."""
        config = self.config
        if net is None:
            net = build_network(config.network_spec(), seed=config.seed)
        unlabelled = [example.image for example in self.pool] if config.semi_supervised != "none" else None
        return train(
            net,
            samples,
            train_config,
            self.device,
            training_progress,
            partial_labels=self.handler.partial_labels,
            unlabelled=unlabelled,
        )

    def train_final(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Train a fresh network on the final labels by ``config.final_train_config()`` and score it; saved as
        ``results.json``'s ``final`` and returned."""
        started = time.monotonic()
        samples, _, _, _ = self.targets()
        result = self._train(None, self.config.final_train_config(), samples)
        confusion = evaluate(result.net, self.eval, self.config.num_classes, self.device)
        ious = iou_per_class(confusion)
        final = {
            "after_round": rows[-1]["round"],
            "labelled_images": len(samples),
            "epochs": self.config.final_epochs,
            "min_steps": self.config.final_min_steps,
            "epochs_run": result.metrics["epochs_run"],
            "train_steps": result.metrics["steps"],
            "train_seconds": result.metrics["seconds"],
            "precision": result.metrics["precision"],
            "miou": mean_iou(confusion),
            "per_class_iou": {name: float(iou) for name, iou in zip(self.config.class_names, ious, strict=True)},
            "seconds": round(time.monotonic() - started, 3),
        }
        self.folder.save_final(final)
        self.log(
            f"[{self.config.strategy} seed {self.config.seed}] final labels, {self.config.final_epochs} epochs from "
            f"ImageNet weights: mIoU {100 * final['miou']:.2f} ({final['seconds']:.1f} s)"
        )
        return final

    # --- run ---

    def run(self) -> list[dict[str, Any]]:
        """Run (or resume) up to ``config.rounds`` rounds; returns every finished round's row."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.folder.check_config()
        rows, revealed, net = self.folder.restore(self.device)
        if revealed is not None:
            self.revealed = revealed
            self.log(f"resuming {self.out} after round {rows[-1]['round']}")
        clicks_total = rows[-1]["clicks_cumulative"] if rows else 0.0
        spent_total = rows[-1].get("budget_spent_cumulative", clicks_total) if rows else 0.0
        for round_index in range(len(rows), self.config.rounds):
            started = time.monotonic()
            # the plan through this round, less what was spent: a round that spent less leaves the rest to the next
            budget = self.config.initial_budget + round_index * self.config.budget - spent_total
            if net is None:  # round 0 trains the seeded ImageNet network
                net = build_network(self.config.network_spec(), seed=self.config.seed).to(self.device)
            acquisition = self.config.acquisition_config(round_index)
            random_order = round_index == 0 or acquisition.heuristic == "random" or acquisition.task_order == "random"
            units = self._candidates(net, round_index, budget, random_order)
            chosen = self._select(units, budget, round_index, random_order)
            if not chosen and units.units and rows:  # nothing fits what is left: the budget carries over
                self.log(f"round {round_index}: no unit fits the {budget:g} clicks left; nothing new to label")
                idle = {
                    "units_selected": 0,
                    "clicks_round": 0.0,
                    "epochs_run": 0,
                    "train_steps": 0,
                    "train_seconds": 0.0,
                }
                seconds = round(time.monotonic() - started, 3)
                rows.append({**rows[-1], **idle, "round": round_index, "seconds": seconds})
                self.folder.save_round(round_index, net, self.revealed, rows)
                continue
            if not chosen:
                self.log(f"round {round_index}: nothing left to label within the budget; stopping")
                break
            clicks = self._reveal(units, chosen)
            clicks_total += clicks
            spent_total += sum(units.charges[position] for position in chosen)
            samples, pixels, annotator, queries = self.targets()
            result = self._train(
                net if self.config.warm_start else None, self.config.train_config(round_index), samples
            )
            net = result.net
            confusion = evaluate(net, self.eval, self.config.num_classes, self.device)
            ious = iou_per_class(confusion)
            row = {
                "round": round_index,
                "strategy": self.config.strategy,
                "seed": self.config.seed,
                "units_selected": len(chosen),
                "clicks_round": clicks,
                "clicks_cumulative": clicks_total,
                "budget_spent_cumulative": spent_total,
                "annotator_clicks_cumulative": annotator,
                "queries_cumulative": queries,
                "annotator_actions_cumulative": editor_actions(
                    self.config.query_mode, clicks_total, queries, len(samples)
                ),
                "labelled_pixels": pixels,
                "labelled_pixel_share": pixels / self.total_pixels,
                "labelled_images": len(samples),
                "miou": mean_iou(confusion),
                "per_class_iou": {name: float(iou) for name, iou in zip(self.config.class_names, ious, strict=True)},
                "click_share_of_full": clicks_total / self.full_annotation_clicks(),
                "epochs_run": result.metrics["epochs_run"],
                "train_steps": result.metrics["steps"],
                "train_seconds": result.metrics["seconds"],
                "precision": result.metrics["precision"],
                "seconds": round(time.monotonic() - started, 3),
            }
            rows.append(json_value(row))  # NaN -> None, as a resumed run reads it back
            self.folder.save_round(round_index, net, self.revealed, rows)
            self.log(
                f"[{self.config.strategy} seed {self.config.seed}] round {round_index + 1}/{self.config.rounds}: "
                f"{len(chosen)} units, {clicks_total:g} clicks, {100 * row['labelled_pixel_share']:.3f}% pixels, "
                f"mIoU {100 * row['miou']:.2f} ({row['seconds']:.1f} s)"
            )
        if self.config.final_epochs is not None and rows and "final" not in self.folder.results():
            self.train_final(rows)
        return rows


def run_simulation(config: SimulationConfig, log: Callable[[str], None] | None = log_line) -> list[dict[str, Any]]:
    """Run or resume one simulation; results land in ``config.out_dir`` (``results.json``, ``rounds.csv``)."""
    return Simulation(config, log).run()
