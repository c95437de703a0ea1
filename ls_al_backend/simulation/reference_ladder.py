"""The fully supervised reference trained to convergence: a ladder of trainings that double the epochs.

Each rung trains one fresh ImageNet network on every pool label for its own number of epochs (the learning rate
schedule spans the whole training, so a rung is not a checkpoint of a longer one) and writes
``<folder>/epochs_<E>.json``; rungs are independent, so they can train side by side on one GPU. The reference is
converged at the first rung E whose double 2E moved mIoU by less than :data:`CONVERGED_POINTS` points::

    python -m ls_al_backend.simulation.reference_ladder train --preset gpu --pool P --eval E --out F --epochs 160
    python -m ls_al_backend.simulation.reference_ladder judge F   # writes F/ladder.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ls_al_backend.model.network import select_device
from ls_al_backend.simulation.config import SimulationConfig, config_from_preset
from ls_al_backend.simulation.metrics import iou_per_class, mean_iou
from ls_al_backend.simulation.output import json_value, log_line, write_atomic
from ls_al_backend.simulation.reference import full_label_splits, train_on_every_label

#: Doubling the epochs moved mIoU by less than this many points: converged.
CONVERGED_POINTS = 1.0


def train_rung(config: SimulationConfig, epochs: int) -> dict[str, Any]:
    """Train one network for ``epochs`` epochs on every pool label (the reference's rule otherwise) and write
    ``<out_dir>/epochs_<epochs>.json``; an existing file is returned as is."""
    out = Path(config.out_dir)
    path = out / f"epochs_{epochs}.json"
    if path.is_file():
        return json.loads(path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    device = select_device(config.device)
    pool, samples, evaluation = full_label_splits(config)
    share = epochs / (config.reference_epochs or config.rounds * config.epochs)
    train_config, result, confusion = train_on_every_label(config, samples, evaluation, device, share)
    payload = {
        "kind": "reference_rung",
        "seed": config.seed,
        "epochs": train_config.epochs,
        "miou": mean_iou(confusion),
        "per_class_iou": dict(zip(config.class_names, map(float, iou_per_class(confusion)), strict=True)),
        "images": len(pool),
        "train_steps": result.metrics["steps"],
        "precision": result.metrics["precision"],
        "seconds": round(time.monotonic() - started, 3),
        "config": config.to_dict(),
    }
    write_atomic(path, json.dumps(json_value(payload), indent=2).encode())
    log_line(f"[reference ladder seed {config.seed}] {train_config.epochs} epochs: mIoU {100 * payload['miou']:.2f}")
    return payload


def judge_ladder(folder: str | Path) -> dict[str, Any]:
    """``ladder.json`` of the rungs in ``folder``: every rung's mIoU (points), each doubling's move, and the first
    converged rung (None while no doubling moved less than :data:`CONVERGED_POINTS`)."""
    folder = Path(folder)
    rungs = {}
    for path in folder.glob("epochs_*.json"):
        payload = json.loads(path.read_text())
        rungs[int(payload["epochs"])] = 100 * payload["miou"]
    doublings = [
        {"epochs": epochs, "doubled": 2 * epochs, "move_points": round(rungs[2 * epochs] - rungs[epochs], 3)}
        for epochs in sorted(rungs)
        if 2 * epochs in rungs
    ]
    converged = next((step for step in doublings if abs(step["move_points"]) < CONVERGED_POINTS), None)
    summary = {
        "rungs": {str(epochs): round(rungs[epochs], 3) for epochs in sorted(rungs)},
        "doublings": doublings,
        "converged_points": CONVERGED_POINTS,
        "converged": converged is not None,
        "reference_miou": None if converged is None else round(rungs[converged["doubled"]], 3),
        "reference_epochs": None if converged is None else converged["doubled"],
    }
    write_atomic(folder / "ladder.json", (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rung = commands.add_parser("train", help="train one rung")
    rung.add_argument("--preset", help="a simulate preset (PRESETS in simulation/config.py)")
    rung.add_argument("--pool", required=True, type=Path)
    rung.add_argument("--eval", required=True, type=Path)
    rung.add_argument("--out", required=True, type=Path)
    rung.add_argument("--epochs", required=True, type=int, help="this rung's epochs")
    rung.add_argument("--seed", type=int, default=0)
    rung.add_argument("--class-weighting")
    rung.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"))
    for option in ("--resolution", "--batch-size", "--pool-limit", "--eval-limit"):
        rung.add_argument(option, type=int, help="as simulate's (small runs)")
    judge = commands.add_parser("judge", help="write ladder.json from the rungs of a folder")
    judge.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "judge":
        print(json.dumps(judge_ladder(args.folder), indent=2))
        return 0
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    config = config_from_preset(
        args.preset,
        pool_dir=str(args.pool),
        eval_dir=str(args.eval),
        out_dir=str(args.out),
        seed=args.seed,
        class_weighting=args.class_weighting,
        precision=args.precision,
        resolution=args.resolution,
        batch_size=args.batch_size,
        pool_limit=args.pool_limit,
        eval_limit=args.eval_limit,
    )
    train_rung(config, args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
