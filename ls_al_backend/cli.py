"""Command line: ``ls-al-backend serve | worker | train | simulate``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from ls_al_backend.config import ConfigError, Settings


def _settings_help() -> str:
    rows = "\n".join(f"  {name:<22} default {default!r}: {text}" for name, default, text in Settings.documentation())
    return "Environment variables:\n" + rows


def serve(settings: Settings, threads: int) -> None:
    """Run the HTTP server (gunicorn, one process so the model cache and job runner are shared)."""
    from gunicorn.app.base import BaseApplication

    from ls_al_backend.backend import Backend
    from ls_al_backend.server import create_app

    app = create_app(Backend(settings))

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{settings.host}:{settings.port}")
            self.cfg.set("workers", 1)
            self.cfg.set("threads", threads)
            self.cfg.set("timeout", 300)
            self.cfg.set("control_socket_disable", True)  # one shared ~/.gunicorn/gunicorn.ctl would clash
            self.cfg.set("accesslog", "-")
            self.cfg.set("loglevel", settings.log_level.lower())

        def load(self):
            return app

    Server().run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ls-al-backend",
        description="Active-learning ML backend for Label Studio (semantic segmentation).",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the HTTP backend Label Studio connects to")
    serve_parser.add_argument("--host", help="bind address (env HOST, default 0.0.0.0)")
    serve_parser.add_argument("--port", type=int, help="port (env PORT, default 9090)")
    serve_parser.add_argument("--threads", type=int, default=4, help="request threads (default 4)")
    worker_parser = commands.add_parser("worker", help="process training and scoring jobs from Redis (REDIS_URL)")
    worker_parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    train_parser = commands.add_parser(
        "train", help="train offline from a Label Studio JSON export and an image folder (no Label Studio needed)"
    )
    train_parser.add_argument("--export", required=True, type=Path, help="Label Studio JSON export (list of tasks)")
    train_parser.add_argument("--images", required=True, type=Path, help="folder holding the tasks' image files")
    train_parser.add_argument("--label-config", required=True, type=Path, help="the project's label config XML")
    train_parser.add_argument("--project", required=True, help="project id the new version is saved under")
    sim = commands.add_parser("simulate", help="simulated active learning from ground-truth masks (no Label Studio)")
    sim.add_argument("--pool", required=True, type=Path, help="pool folder: images/*.jpg|png and masks/*.png")
    sim.add_argument("--eval", required=True, type=Path, help="evaluation folder, same layout")
    sim.add_argument("--out", required=True, type=Path, help="output folder (a run there is resumed)")
    sim.add_argument(
        "--mode",
        default="superpixel_dominant",
        choices=("image", "superpixel_dominant", "superpixel_multiclass", "pixels"),
        help="query mode",
    )
    sim.add_argument(
        "--acquisition", default="{}", help='JSON, e.g. \'{"heuristic": "bald", "class_balance": "pixbal"}\''
    )
    sim.add_argument(
        "--preset", choices=("cpu", "gpu"), help="named settings (see PRESETS in simulation.py); options below win"
    )
    sim.add_argument("--name", help="strategy name in results and plots (default: mode:heuristic[:balance])")
    sim.add_argument("--budget", type=float, help="clicks per round (default 100)")
    sim.add_argument("--initial-budget", type=float, help="clicks of the random round 0 (default 100)")
    sim.add_argument("--budget-unit", choices=("clicks", "pixels"), help="what budgets count (default clicks)")
    sim.add_argument("--rounds", type=int, help="rounds, the random round 0 included (default 5)")
    sim.add_argument("--seed", type=int, help="default 0")
    sim.add_argument("--resolution", type=int, help="longest image side (default 240)")
    sim.add_argument("--epochs", type=int, help="training epochs per round (default 10)")
    sim.add_argument("--steps-per-epoch", type=int, help="at most this many batches per epoch (default: all)")
    sim.add_argument("--batch-size", type=int, help="default 4")
    sim.add_argument("--reference-epochs", type=int, help="epochs of the reference run (default rounds x epochs)")
    sim.add_argument("--mc-samples", type=int, help="MC-dropout samples (default 20)")
    sim.add_argument("--pool-limit", type=int, help="use this many pool images (evenly spaced)")
    sim.add_argument("--eval-limit", type=int, help="use this many evaluation images (evenly spaced)")
    sim.add_argument("--no-warm-start", action="store_true", help="retrain from ImageNet weights every round")
    sim.add_argument("--reference", action="store_true", help="also train the fully supervised reference")
    sim.add_argument("--reference-only", action="store_true", help="train only the fully supervised reference")
    sim.add_argument("--plot", nargs="+", type=Path, help="only plot these results.json/reference.json into --out")
    args = parser.parse_args(argv)

    overrides = {key: value for key in ("host", "port") if (value := getattr(args, key, None)) is not None}
    try:
        settings = Settings.from_env(**overrides)
    except ConfigError as error:
        print(f"ls-al-backend: configuration error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    try:
        if args.command == "serve":
            serve(settings, args.threads)
        elif args.command == "worker":
            if not settings.redis_url:
                raise CommandError("the worker needs REDIS_URL (the embedded runner lives inside `serve`)")
            from ls_al_backend.jobs.rq_jobs import run_worker

            run_worker(settings, burst=args.burst)
        elif args.command == "train":
            train_offline(settings, args.export, args.images, args.label_config, args.project)
        elif args.command == "simulate":
            simulate(args)
    except CommandError as error:
        print(f"ls-al-backend {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


class CommandError(Exception):
    """A readable reason why a command cannot run."""


def train_offline(settings: Settings, export: Path, images: Path, label_config: Path, project: str) -> None:
    """Train from an exported project: image URLs are matched to files in ``images`` by file name."""
    from ls_al_backend.jobs.pipeline import Pipeline
    from ls_al_backend.labeling.config import UnsupportedLabelConfig, parse_label_config
    from ls_al_backend.projects import InvalidProject, project_id_from

    try:
        project_id = project_id_from(project)
        config = parse_label_config(label_config.read_text())
        tasks = json.loads(export.read_text())
    except (OSError, json.JSONDecodeError, InvalidProject, UnsupportedLabelConfig) as error:
        raise CommandError(str(error)) from None
    if not isinstance(tasks, list) or not images.is_dir():
        raise CommandError("--export must hold a JSON list of tasks and --images must be a folder")
    for task in tasks:
        url = str(task.get("data", {}).get(config.image_key, ""))
        task.setdefault("data", {})[config.image_key] = str(images / Path(url.split("?d=")[-1]).name)
    settings = dataclasses.replace(settings, local_image_roots=(str(images.resolve()),))
    try:
        outcome = Pipeline(settings).train_on_tasks(project_id, config, tasks, report=_print_progress)
    except ValueError as error:
        raise CommandError(str(error)) from None
    print(f"saved model v{outcome.version} for project {project_id} in {settings.models_dir}")


def simulate(args: argparse.Namespace) -> None:
    """Pool-based active learning on a labelled dataset, with the server's acquisition and training code."""
    from ls_al_backend.simulation import (
        config_from_preset,
        fully_supervised_reference,
        plot_learning_curves,
        run_simulation,
    )

    try:
        if args.plot:
            print(plot_learning_curves(args.plot, args.out / "learning_curves.png"))
            print(plot_learning_curves(args.plot, args.out / "learning_curves_pixels.png", x_axis="pixels"))
            return
        config = config_from_preset(
            args.preset,
            pool_dir=str(args.pool),
            eval_dir=str(args.eval),
            out_dir=str(args.out),
            query_mode=args.mode,
            acquisition=json.loads(args.acquisition),
            name=args.name,
            budget=args.budget,
            initial_budget=args.initial_budget,
            budget_unit=args.budget_unit,
            rounds=args.rounds,
            seed=args.seed,
            resolution=args.resolution,
            epochs=args.epochs,
            steps_per_epoch=args.steps_per_epoch,
            batch_size=args.batch_size,
            reference_epochs=args.reference_epochs,
            mc_samples=args.mc_samples,
            pool_limit=args.pool_limit,
            eval_limit=args.eval_limit,
            warm_start=False if args.no_warm_start else None,
        )
        if not args.reference_only:
            run_simulation(config)
        if args.reference or args.reference_only:
            fully_supervised_reference(config)
    except (ValueError, OSError) as error:
        raise CommandError(str(error)) from None


def _print_progress(update: dict) -> None:
    if update.get("stage") == "training":
        print(f"epoch {update.get('epoch')}/{update.get('epochs')} loss {update.get('loss', float('nan')):.4f}")


if __name__ == "__main__":
    sys.exit(main())
