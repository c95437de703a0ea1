"""Command line: ``ls-al-backend serve | worker | train | simulate | bench``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import sys
from pathlib import Path

from ls_al_backend import metrics_folders
from ls_al_backend.config import ConfigError, Settings


def _settings_help() -> str:
    rows = "\n".join(f"  {name:<22} default {default!r}: {text}" for name, default, text in Settings.documentation())
    return "Environment variables:\n" + rows


def serve(settings: Settings, threads: int) -> None:
    """Run the HTTP server (gunicorn, one process so the model cache and job runner are shared)."""
    from gunicorn.app.base import BaseApplication

    from ls_al_backend import metrics
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
            if metrics.multiprocess_mode():  # PROMETHEUS_MULTIPROC_DIR: drop an ended process's live gauges
                self.cfg.set("child_exit", lambda server, worker: metrics.forget_process(worker.pid))

        def load(self):
            return app

    Server().run()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"] and os.environ.get("REDIS_URL"):  # RQ forks a process per job: see jobs/rq_worker.py
        metrics_folders.use_private_folder()
    elif argv[:1] == ["serve"] and os.environ.get(metrics_folders.VARIABLE):  # gunicorn: docs/metrics.md
        metrics_folders.empty_folder(Path(os.environ[metrics_folders.VARIABLE]))
    from ls_al_backend.model.semi_supervised import SEMI_SUPERVISED_MODES
    from ls_al_backend.model.train_config import CLASS_WEIGHTINGS
    from ls_al_backend.modes import QueryMode
    from ls_al_backend.simulation.config import PRESETS as SIMULATION_PRESETS

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
    worker_parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    worker_parser.add_argument(
        "--queues",
        default="training,scoring",
        help="comma-separated roles this worker takes, in priority order: training (TRAINING_QUEUE), scoring "
        "(SCORING_QUEUE); e.g. `--queues training` on the GPU host (default training,scoring)",
    )
    worker_parser.add_argument(
        "--metrics-port", type=int, help="serve Prometheus metrics (jobs, queues, scoring, training) on this port"
    )
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
        choices=[mode.value for mode in QueryMode],
        help="query mode (dense_brush: whole images traced as polygons; superpixel_*: superpixel queries; "
        "sparse_points: pixel queries)",
    )
    sim.add_argument(
        "--acquisition", default="{}", help='JSON, e.g. \'{"heuristic": "bald", "class_balance": "pixbal"}\''
    )
    sim.add_argument(
        "--preset",
        choices=SIMULATION_PRESETS,
        help="named settings (PRESETS in simulation/config.py); options below win",
    )
    sim.add_argument("--name", help="strategy name in results and plots (default: mode:heuristic[:balance])")
    sim.add_argument("--budget", type=float, help="clicks per round (default 100)")
    sim.add_argument("--initial-budget", type=float, help="clicks of the random round 0 (default 100)")
    sim.add_argument("--budget-unit", choices=("clicks", "pixels"), help="what budgets count (default clicks)")
    sim.add_argument("--rounds", type=int, help="rounds, the random round 0 included (default 5)")
    sim.add_argument("--seed", type=int, help="default 0")
    sim.add_argument("--resolution", type=int, help="longest image side (default 240)")
    sim.add_argument("--epochs", type=int, help="training epochs per round (default 10)")
    sim.add_argument("--min-steps", type=int, help="at least this many optimizer steps per round (default 0)")
    sim.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), help="default auto (see PRECISION)")
    sim.add_argument("--batch-size", type=int, help="default 4")
    sim.add_argument("--reference-epochs", type=int, help="epochs of the reference run (default rounds x epochs)")
    sim.add_argument(
        "--final-epochs",
        type=int,
        help="after the last round, train a fresh ImageNet network on the final labels for this many epochs and "
        "score it (results.json's 'final'; default: skipped)",
    )
    sim.add_argument("--final-min-steps", type=int, help="at least this many steps in that training (default 0)")
    sim.add_argument(
        "--outline-resolution",
        type=int,
        help="dense_brush: count a whole image's outline clicks on its mask at this longest side (default: "
        "--resolution; the annotator outlines the image Label Studio shows, e.g. 480 for CamVid as stored)",
    )
    sim.add_argument("--mc-samples", type=int, help="MC-dropout samples (default 20)")
    sim.add_argument("--pool-limit", type=int, help="use this many pool images (evenly spaced)")
    sim.add_argument("--eval-limit", type=int, help="use this many evaluation images (evenly spaced)")
    sim.add_argument("--no-warm-start", action="store_true", help="retrain from ImageNet weights every round")
    sim.add_argument(
        "--semi-supervised",
        choices=SEMI_SUPERVISED_MODES,
        help="also learn from every pool image as unlabelled, with a mean teacher (default none)",
    )
    sim.add_argument(
        "--class-weighting",
        choices=CLASS_WEIGHTINGS,
        help="class weights in every round's loss and the reference's (default none, the unweighted benchmark; the "
        "server's TRAIN_CLASS_WEIGHTING defaults to inverse_sqrt_frequency)",
    )
    sim.add_argument("--reference", action="store_true", help="also train the fully supervised reference")
    sim.add_argument("--reference-only", action="store_true", help="train only the fully supervised reference")
    sim.add_argument(
        "--plot",
        nargs="+",
        type=Path,
        help="only summarise these run folders or results.json/reference.json files into --out "
        "(summary.json, summary.md, learning curves)",
    )
    bench_parser = commands.add_parser(
        "bench", help="measure speed (MC dropout, /predict, pool scoring, training); write JSON + README.md to --out"
    )
    bench_parser.add_argument("--data", required=True, type=Path, help="dataset split folder: images/ and masks/")
    bench_parser.add_argument("--out", required=True, type=Path, help="results folder, e.g. benchmarks/speed")
    bench_parser.add_argument("--images", type=int, help="images for /predict and pool scoring (default 50)")
    bench_parser.add_argument("--samples", help="MC-dropout sample counts T, comma-separated (default 1,5,10,20,50)")
    bench_parser.add_argument(
        "--only",
        help="comma-separated subset of mc,predict,scoring,training,precision,runtimes,predict_memory,"
        "prediction_bytes,scale (default all but scale, which loads the Label Studio of LABEL_STUDIO_URL with "
        "--scale-tasks tasks)",
    )
    bench_parser.add_argument("--scale-tasks", type=int, help="tasks of the scale project (default 10000)")
    bench_parser.add_argument(
        "--scale-workers", help="workers of each scale round, comma-separated, one round each (default 1,2,2)"
    )
    bench_parser.add_argument(
        "--label-studio-db", type=Path, help="Label Studio's SQLite file, whose growth scale reports"
    )
    bench_parser.add_argument("--mc-images", type=int, help="images for the MC-dropout cost (default 10)")
    bench_parser.add_argument("--train-images", type=int, help="images for training speed (default 16)")
    bench_parser.add_argument("--train-epochs", type=int, help="epochs for training speed (default 2)")
    bench_parser.add_argument(
        "--size-train-epochs", type=int, help="epochs of the model whose prediction bytes are measured (default 20)"
    )
    bench_parser.add_argument("--workers", help="worker counts for pool scoring, comma-separated (default 1,2)")
    bench_parser.add_argument("--redis-url", help="Redis for the scoring workers (default redis://127.0.0.1:6379/9)")
    bench_parser.add_argument("--label-configs", type=Path, help="label config folder (default label_configs)")
    bench_parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 images shrunk to 64 px, T in 1,2, MC_SAMPLES=2, one training step (explicit options win)",
    )
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
            worker(settings, args.queues, args.burst, args.metrics_port)
        elif args.command == "train":
            train_offline(settings, args.export, args.images, args.label_config, args.project)
        elif args.command == "simulate":
            simulate(args)
        elif args.command == "bench":
            bench(args, settings, sys.argv[1:] if argv is None else argv)
    except CommandError as error:
        print(f"ls-al-backend {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


class CommandError(Exception):
    """A readable reason why a command cannot run."""


def worker(settings: Settings, queues: str, burst: bool, metrics_port: int | None) -> None:
    """Run an RQ worker bound to the queue roles in ``queues`` (comma-separated ``training``, ``scoring``)."""
    from ls_al_backend.jobs.rq_jobs import QUEUE_ROLES
    from ls_al_backend.jobs.rq_worker import run_worker

    if not settings.redis_url:
        raise CommandError("the worker needs REDIS_URL (the embedded runner lives inside `serve`)")
    roles = tuple(role.strip() for role in queues.split(",") if role.strip())
    unknown = sorted(set(roles) - set(QUEUE_ROLES))
    if not roles or unknown or len(set(roles)) != len(roles):
        raise CommandError(f"--queues {queues!r}: expected training, scoring or training,scoring (each once)")
    if metrics_port is not None and not 0 < metrics_port < 65536:
        raise CommandError(f"--metrics-port {metrics_port}: expected a port number (1-65535)")
    run_worker(settings, roles, burst=burst, metrics_port=metrics_port)


def train_offline(settings: Settings, export: Path, images: Path, label_config: Path, project: str) -> None:
    """Train from an exported project: image URLs are matched to files in ``images`` by file name."""
    from ls_al_backend.jobs.pipeline import Pipeline
    from ls_al_backend.labeling.config import UnsupportedLabelConfig
    from ls_al_backend.modes import parse_label_config
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
    from ls_al_backend.simulation import config_from_preset, fully_supervised_reference, run_simulation, write_summary

    try:
        if args.plot:
            for path in write_summary(args.plot, args.out):
                print(path)
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
            min_steps=args.min_steps,
            precision=args.precision,
            batch_size=args.batch_size,
            reference_epochs=args.reference_epochs,
            final_epochs=args.final_epochs,
            final_min_steps=args.final_min_steps,
            mc_samples=args.mc_samples,
            outline_resolution=args.outline_resolution,
            pool_limit=args.pool_limit,
            eval_limit=args.eval_limit,
            warm_start=False if args.no_warm_start else None,
            semi_supervised=args.semi_supervised,
            class_weighting=args.class_weighting,
        )
        if not args.reference_only:
            run_simulation(config)
        if args.reference or args.reference_only:
            fully_supervised_reference(config)
    except (ValueError, OSError) as error:
        raise CommandError(str(error)) from None


def bench(args: argparse.Namespace, settings: Settings, argv: list[str]) -> None:
    """Measure the product's speed and write ``<out>/<time>-<host>.json`` and ``<out>/README.md``."""
    from ls_al_backend.bench import BenchOptions, quick_run, run_benchmarks
    from ls_al_backend.bench.report import render_run

    def counts(text: str | None, option: str) -> tuple[int, ...] | None:
        try:
            return None if text is None else tuple(int(word) for word in text.split(","))
        except ValueError:
            raise CommandError(f"{option}: expected comma-separated integers, got {text!r}") from None

    options = BenchOptions(data=args.data, out=args.out)
    if args.quick:
        options, settings = quick_run(options, settings)
    given = {
        "redis_url": args.redis_url,
        "label_configs": args.label_configs,
        "images": args.images,
        "samples": counts(args.samples, "--samples"),
        "only": None if args.only is None else tuple(word.strip() for word in args.only.split(",")),
        "mc_images": args.mc_images,
        "train_images": args.train_images,
        "train_epochs": args.train_epochs,
        "size_train_epochs": args.size_train_epochs,
        "workers": counts(args.workers, "--workers"),
        "scale_tasks": args.scale_tasks,
        "scale_workers": counts(args.scale_workers, "--scale-workers"),
        "label_studio_db": args.label_studio_db,
    }
    options = dataclasses.replace(options, **{key: value for key, value in given.items() if value is not None})
    try:
        report, path = run_benchmarks(options, settings, command="ls-al-backend " + shlex.join(argv))
    except (ValueError, OSError) as error:
        raise CommandError(str(error)) from None
    print(render_run(report, path.name))
    print(f"wrote {path} and {path.parent / 'README.md'}")
    failed = [name for name, result in report["results"].items() if "error" in result]
    if failed:
        raise CommandError(f"{', '.join(failed)} failed (the error is in {path})")


def _print_progress(update: dict) -> None:
    if update.get("stage") == "training":
        print(f"epoch {update.get('epoch')}/{update.get('epochs')} loss {update.get('loss', float('nan')):.4f}")


if __name__ == "__main__":
    sys.exit(main())
