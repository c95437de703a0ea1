"""Benchmark reports: one JSON file per run, and a README.md with every run's tables, newest first."""

from __future__ import annotations

import json
import re
import shlex
from datetime import datetime
from pathlib import Path
from typing import Any

TITLES = {
    "mc": "MC dropout",
    "predict": "`/predict` latency",
    "scoring": "Pool scoring",
    "training": "Training",
    "precision": "Precision and memory layout",
    "runtimes": "Runtimes of the encoder + decoder",
    "predict_memory": "Memory of one prediction",
    "prediction_bytes": "Bytes per prediction",
    "scale": "Scale: a large project in a real Label Studio",
}


def write_report(out: Path, report: dict[str, Any]) -> Path:
    """Write ``<out>/<YYYYmmdd-HHMMSS>-<host>[-quick].json``, regenerate ``<out>/README.md``; return the JSON path."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(report["started_at"]).strftime("%Y%m%d-%H%M%S")
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", report["machine"]["host"]) or "host"
    path = out / f"{stamp}-{host}{'-quick' if report['quick'] else ''}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    (out / "README.md").write_text(render_readme(out))
    return path


def render_readme(out: Path) -> str:
    """Markdown for every run recorded in ``out`` (its ``*.json`` reports), newest first."""
    sections = []
    for path in sorted(out.glob("*.json"), reverse=True):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(report, dict) and isinstance(report.get("results"), dict):  # not summary.json
            sections.append(render_run(report, path.name))
    header = (
        "# Speed benchmarks\n\n"
        "Written by `ls-al-backend bench` (see `ls-al-backend bench --help`); one section per run, newest first, "
        "regenerated from the JSON files in this folder, which hold every number (per-image latencies included).\n"
    )
    return "\n".join([header, *sections])


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_run(report: dict[str, Any], file_name: str) -> str:
    """One run: heading, exact command, machine, settings, then one table per measurement."""
    machine = report["machine"]
    when = datetime.fromisoformat(report["started_at"]).strftime("%Y-%m-%d %H:%M UTC")
    kind = " (quick smoke run: tiny sizes, not a measurement)" if report["quick"] else ""
    environment = " ".join(f"{name}={shlex.quote(value)}" for name, value in report["environment"].items())
    settings = ", ".join(f"`{name}={value}`" for name, value in report["settings"].items())
    parts = [
        f"## {when}: {machine['cpu']}, {machine['device']}{kind}\n",
        f"Command (repository root): `{(environment + ' ' + report['command']).strip()}` (results: `{file_name}`)\n",
        f"Machine: host `{machine['host']}`, {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} "
        f"usable), {machine['memory_gib']} GiB; torch {machine['torch']} with {machine['torch_threads']} thread(s), "
        f"Python {machine['python']}; device `{machine['device']}`, GPU: {machine['gpu'] or 'none'}.\n",
        f"Data: `{report['data']}`" + (f", images shrunk to {report['image_side']} px" if report["image_side"] else "")
        + f". Settings: {settings}. The model is the untrained v0 (timings do not depend on the weights).\n",
    ]  # fmt: skip
    results = report["results"]
    renderers = {
        "mc": _mc,
        "predict": _predict,
        "scoring": _scoring,
        "training": _training,
        "precision": _precision,
        "runtimes": _runtimes,
        "predict_memory": _predict_memory,
        "prediction_bytes": _prediction_bytes,
        "scale": _scale,
    }
    for name, result in results.items():
        title = TITLES.get(name, name)
        if "error" in result:
            parts.append(f"**{title}** failed: `{result['error']}`\n")
        elif "skipped" in result:
            parts.append(f"**{title}** skipped: {result['skipped']}\n")
        else:
            parts.append(renderers[name](result))
    parts.append(_resources(results))
    return "\n".join(parts)


def _mc(result: dict[str, Any]) -> str:
    scales = list(dict.fromkeys(row["mc_resolution"] for row in result["rows"]))
    by_t: dict[int, dict[float, dict[str, Any]]] = {}
    for row in result["rows"]:
        by_t.setdefault(row["samples"], {})[row["mc_resolution"]] = row
    rows = [
        [t, *(f"{cells[s]['ratio']:.2f}x ({cells[s]['median_s']:.3f} s)" for s in scales)] for t, cells in by_t.items()
    ]
    height, width = result["image_size"]
    input_h, input_w = result["network_input"]
    intro = (
        f"**MC dropout**: one whole `mc_dropout` call (T head samples, statistics and the full-resolution class "
        f"probabilities) as a multiple of one deterministic forward pass ({result['deterministic_median_s']:.3f} s), "
        f"median over {result['images']} images of {width}x{height} (network input {input_w}x{input_h}), "
        f"`{result['device']}`:\n"
    )
    return intro + "\n" + _table(["T", *(f"MC_RESOLUTION={s}" for s in scales)], rows)


def _predict(result: dict[str, Any]) -> str:
    rows = [
        [name, m["images"], f"{m['p50_s']:.3f}", f"{m['p95_s']:.3f}", f"{m['mean_s']:.3f}", m["response_kib_p50"]]
        for name, m in result["modes"].items()
    ]
    intro = (
        "**`/predict` latency** over HTTP, one task (one image) per request to `ls-al-backend serve`, one server "
        "per label config (its own data folder, so no superpixel cache is shared), after one warm-up request:\n"
    )
    return intro + "\n" + _table(["label config", "images", "p50 (s)", "p95 (s)", "mean (s)", "response (KiB)"], rows)


def _scoring(result: dict[str, Any]) -> str:
    rows = [[r["workers"], r["images"], r["chunks"], f"{r['seconds']:.2f}", f"{r['images_per_s']:.2f}"]
            for r in result["runs"]]  # fmt: skip
    intro = (
        f"**Pool scoring**: `score_job` chunks of at most {result['chunk_size']} task(s) (`{result['label_config']}`; "
        f"predict, then write score and prediction to a Label Studio stand-in) on `ls-al-backend worker` processes, "
        f"RQ on `{result['redis_url']}`; each chunk runs in a fresh RQ work horse "
        "(forked from a worker that has torch imported; it loads the model):\n"
    )
    return intro + "\n" + _table(["workers", "images", "chunks", "seconds", "images/s"], rows)


def training_images_per_s_after_first_epoch(result: dict[str, Any]) -> float | None:
    """Training images/s over the epochs after the first (None with a single epoch), from ``measure_training``'s
    ``seconds_per_epoch`` and ``images_per_epoch``."""
    later = result["seconds_per_epoch"][1:]
    return result["images_per_epoch"] * len(later) / sum(later) if later and sum(later) > 0 else None


def _training(result: dict[str, Any]) -> str:
    height, width = result["image_size"]
    epochs = ", ".join(f"{seconds:.2f}" for seconds in result["seconds_per_epoch"])
    row = [
        result["images"],
        f"{width}x{height}",
        result["crop_size"],
        result["batch_size"],
        result["epochs"],
        result["images_per_epoch"],
        epochs,
        f"{result['images_per_s']:.2f}",
        f"{steady:.2f}" if (steady := training_images_per_s_after_first_epoch(result)) is not None else "-",
    ]
    intro = (
        f"**Training**: `train()` with the `TRAIN_*` settings on CamVid masks as dense labels, no hold-out, "
        f"`{result['device']}` in {result.get('precision', 'fp32')}; the first epoch also pays for warming up "
        f"(on CUDA: the context, cuDNN's choice of kernels), so the last column leaves it out:\n"
    )
    header = [
        "images", "image size", "crop", "batch", "epochs", "images per epoch", "seconds per epoch", "images/s",
        "images/s after epoch 1",
    ]  # fmt: skip
    return intro + "\n" + _table(header, [row])


def _precision(result: dict[str, Any]) -> str:
    height, width = result["image_size"]
    intro = (
        f"**Precision and memory layout**: the bare network, batch {result['batch_size']} at {width}x{height}, on "
        f"`{result['device']}`; native bf16: {'yes' if result['native_bf16'] else 'no'}. `PRECISION=auto` picks: "
        f"{result['auto_precision']}.\n"
    )
    header = ["variant", "train images/s", "x fp32", "inference images/s", "x fp32"]
    rows = [
        [
            row["variant"],
            f"{row['train_images_per_s']:.1f}",
            f"{row['train_speedup']:.2f}",
            f"{row['inference_images_per_s']:.1f}",
            f"{row['inference_speedup']:.2f}",
        ]
        for row in result["rows"]
    ]
    return intro + "\n" + _table(header, rows)


def _runtimes(result: dict[str, Any]) -> str:
    height, width = result["image_size"]
    picks = result.get("auto_picks") or "torch (not a CPU)"
    intro = (
        f"**Runtimes of the encoder + decoder** (`net.features`, run once per image; the MC-dropout head is the same "
        f"on each): batch {result['batch_size']} at {width}x{height}, on `{result['device']}` in "
        f"{result['precision']} with {result['threads']} thread(s). `INFERENCE_RUNTIME=auto` picks here: {picks}.\n"
    )
    header = ["runtime", "images/s", "x bare network", "x torch (BatchNorm folded)"]
    rows = [
        [row["runtime"], f"{row['images_per_s']:.2f}", f"{row['x_bare']:.2f}", f"{row['x_torch']:.2f}"]
        for row in result["rows"]
    ]
    return intro + "\n" + _table(header, rows)


def _predict_memory(result: dict[str, Any]) -> str:
    intro = (
        "**Memory of one prediction**: one `Backend.predict` of a CamVid scene scaled up, superpixel mode, each in a "
        "fresh process; RSS above the process with the model loaded:\n"
    )
    header = ["image", "megapixels", "ANALYSIS_MAX_SIDE", "seconds", "prediction RSS (MiB)", "peak RSS (MiB)"]
    rows = [
        [
            f"{row['image_size'][1]}x{row['image_size'][0]}",
            row["megapixels"],
            row["analysis_max_side"],
            row["seconds"],
            row["prediction_rss_mib"],
            row["peak_rss_mib"],
        ]
        for row in result["rows"]
    ]
    return intro + "\n" + _table(header, rows)


def _prediction_bytes(result: dict[str, Any]) -> str:
    intro = (
        f"**Bytes per prediction** (what Label Studio stores): {result['images']} images predicted by the untrained "
        f"v0 and by v1, trained {result['epochs']} epochs on {result['train_images']} images (last training loss "
        f"{result['final_train_loss']}); `layers` is CLASS_MASKS and UNCERTAINTY_OVERLAY (`auto`: the defaults):\n"
    )
    header = ["mode", "version", "layers", "mean bytes", "max bytes", "results per prediction"]
    rows = [
        [
            row["mode"],
            row["version"],
            row["layers"],
            f"{row['mean_bytes']:,}",
            f"{row['max_bytes']:,}",
            ", ".join(f"{kind} {count}" for kind, count in row["results_per_prediction"].items()) or "none",
        ]
        for row in result["rows"]
    ]
    return intro + "\n" + _table(header, rows)


def _megabytes(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _scale(result: dict[str, Any]) -> str:
    stored = result["stored_predictions"]
    intro = (
        f"**Scale**: a project of {result['tasks']:,} tasks (`{result['label_config']}`, {result['distinct_images']} "
        f"distinct images under distinct names) in the Label Studio at `{result['label_studio_url']}`, imported in "
        f"{result['import_s']} s; {result['what']}; `score_job` chunks of {result['chunk_size']} tasks, "
        f"KEEP_PREDICTION_VERSIONS={result['keep_prediction_versions']}. Label Studio's database: "
        f"{_megabytes(result['ls_db_bytes_before'])} MB before, {_megabytes(result['ls_db_bytes_after_import'])} MB "
        f"after the import. Stored predictions ({stored['sampled_tasks']} tasks read back): mean "
        f"{stored['mean_bytes']} bytes, largest {stored['max_bytes']}, at most {stored['most_versions_per_task']} "
        f"version(s) per task. Label Studio's peak RSS: {result['label_studio_peak_rss_mib'] or '-'} MiB.\n"
    )
    header = ["round", "version", "workers", "threads each", "images", "failed", "seconds", "images/s", "LS db (MB)",
              "worker seconds: read / network / render / write", "publish (s)", "versions deleted"]  # fmt: skip
    rows = [
        [r["round"], r["model_version"], r["workers"], r["threads_per_worker"], r["images"], r["failed"],
         r["seconds"], f"{r['images_per_s']:.2f}", _megabytes(r["ls_db_bytes"]),
         " / ".join(_seconds(r["stage_seconds"].get(stage)) for stage in ("read", "network", "render", "write")),
         r.get("publish_s", "-"), ", ".join(f"{v} ({n})" for v, n in r.get("deleted_versions", {}).items()) or "-"]
        for r in result["rounds"]
    ]  # fmt: skip
    return intro + "\n" + _table(header, rows)


def _resources(results: dict[str, Any]) -> str:
    rows = []
    for name, result in results.items():
        memory = result.get("peak_memory") or {}
        cuda = memory.get("cuda_max_allocated_mib")
        rows.append(
            [
                TITLES.get(name, name),
                result["wall_s"],
                " / ".join(str(value) for value in result["load_average_at_start"]),
                memory.get("rss_mib", "-"),
                memory.get("of", "-"),
                "-" if cuda is None else cuda,
            ]
        )
    header = ["measurement", "wall (s)", "load average at start", "peak RSS (MiB)", "of", "CUDA peak allocated (MiB)"]
    return "**Per measurement**: time, machine load and peak memory:\n\n" + _table(header, rows)
