"""`benchmarks/active_learning/confirmatory/gpu.sh` in its tiny mode on the CPU: the GPU protocol's code path (both
arms through run_preset.sh with their final labels kept and trained again, the reference ladder's rungs side by
side, both summaries and the packed results) on the tiny CamVid split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "benchmarks" / "active_learning" / "confirmatory" / "gpu.sh"


def test_the_gpu_protocol_runs_end_to_end_in_tiny_mode(data, tmp_path):
    pool, evaluation = data
    camvid = tmp_path / "camvid"
    camvid.mkdir()
    (camvid / "train").symlink_to(pool)
    (camvid / "val").symlink_to(evaluation)
    results, out = tmp_path / "results", tmp_path / "out"
    environment = {**os.environ, "TINY": "1", "CAMVID": str(camvid), "OUT_ROOT": str(results), "OUT": str(out)}
    environment["PYTHON"] = sys.executable
    finished = subprocess.run(
        ["bash", str(SCRIPT)], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=600
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr

    for arm in ("sp_entropy_classbal", "sp_random"):
        run = results / "gpu_inverse_sqrt_frequency" / arm / "seed_100"
        payload = json.loads((run / "results.json").read_text())
        assert len(payload["rows"]) == 2 and payload["final"]["after_round"] == 1  # trained again
        assert payload["config"]["resolution"] == 64 and payload["config"]["acquisition"]["superpixel_size"] == 32
        assert (run / "state" / "round_001.json").is_file()  # the final labels, kept

    ladder = json.loads((out / "ladder.json").read_text())
    assert set(ladder["rungs"]) == {"1", "2"}
    (doubling,) = ladder["doublings"]
    assert doubling["move_points"] == round(ladder["rungs"]["2"] - ladder["rungs"]["1"], 3)
    assert ladder["converged"] == (abs(doubling["move_points"]) < 1.0)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"] == "gpu" and summary["precisions"] == ["fp32"]
    assert {result["verdict"] for result in summary["verdict"].values()} == {"incomplete"}
    assert "sp_random seed 104: not finished" in summary["not_counted"]
    invalid = next(line for line in summary["not_counted"] if line.startswith("sp_random seed 100"))
    assert "invalid" in invalid and "resolution is 64, the protocol's is 480" in invalid
    assert (out / "machine.txt").read_text().strip()
    with tarfile.open(out / "confirmatory_gpu.tar.gz") as packed:
        names = packed.getnames()
    assert any(name.endswith("sp_random/seed_100/state/round_001.json") for name in names)
    assert not any(name.endswith(".pt") for name in names)
