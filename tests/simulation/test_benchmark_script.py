"""`benchmarks/active_learning/run_preset.sh`, the one script behind the committed benchmark results: another
superpixel size runs into its own folder with the preset's reference, whole images priced by another rule are
summarised apart, and every committed summary is what the script (or its folder's README command) writes from the
committed runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "benchmarks" / "active_learning" / "run_preset.sh"
COMMITTED_REFERENCE = (
    REPO_ROOT
    / "benchmarks"
    / "active_learning"
    / "cpu_inverse_sqrt_frequency"
    / "reference"
    / "seed_0"
    / "reference.json"
)
TINY_RUN = (
    "--pool-limit 4 --eval-limit 2 --rounds 2 --epochs 1 --min-steps 1 --mc-samples 2 --resolution 64 --batch-size 2"
)


def run_script(camvid: Path, out_root: Path, script: Path = SCRIPT, **settings: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "CAMVID": str(camvid),
        "OUT_ROOT": str(out_root),
        "LS_AL": f"{sys.executable} -m ls_al_backend.cli",
        "CLASS_WEIGHTING": "inverse_sqrt_frequency",
        "SEEDS": "0",
        "PARALLEL": "1",
        "SIMULATE_OPTIONS": TINY_RUN,
        **settings,
    }
    return subprocess.run(
        ["bash", str(script)], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def camvid(data, tmp_path) -> Path:
    """The tiny pool and evaluation split laid out as the script expects: ``<CAMVID>/train`` and ``<CAMVID>/val``."""
    pool, evaluation = data
    root = tmp_path / "camvid"
    root.mkdir()
    (root / "train").symlink_to(pool)
    (root / "val").symlink_to(evaluation)
    return root


def test_a_smaller_superpixel_regime_runs_into_its_own_folder_and_prices_outlines_apart(camvid, tmp_path):
    out_root = tmp_path / "results"
    reference = out_root / "cpu_inverse_sqrt_frequency" / "reference" / "seed_0"
    reference.mkdir(parents=True)  # the preset's reference, as committed beside the regime's runs
    shutil.copy(COMMITTED_REFERENCE, reference / "reference.json")

    result = run_script(camvid, out_root, SUPERPIXEL_SIZE="8", BUDGET="30", ONLY="sp_random image_random_outline_480")

    assert result.returncode == 0, result.stderr
    regime = out_root / "superpixel_8" / "cpu_inverse_sqrt_frequency"
    config = json.loads((regime / "sp_random" / "seed_0" / "config.json").read_text())
    assert config["acquisition"] == {"heuristic": "random", "superpixel_size": 8}
    assert (config["budget"], config["initial_budget"]) == (30, 30)
    outlined = json.loads((regime / "image_random_outline_480" / "seed_0" / "config.json").read_text())
    assert outlined["outline_resolution"] == 480
    assert not (regime / "reference").exists()  # the reference is the preset's, not trained again

    main = json.loads((regime / "summary.json").read_text())
    assert set(main["strategies"]) == {"sp_random"}
    assert main["reference"]["seeds"] == 1
    priced_apart = json.loads((regime / "outline_480" / "summary.json").read_text())
    assert set(priced_apart["strategies"]) == {"sp_random", "image_random_outline_480"}
    assert priced_apart["reference"]["seeds"] == 1


def test_a_semi_supervised_regime_runs_into_its_own_folder_beside_the_supervised_reference(camvid, tmp_path):
    out_root = tmp_path / "results"
    reference = out_root / "cpu_inverse_sqrt_frequency" / "reference" / "seed_0"
    reference.mkdir(parents=True)
    shutil.copy(COMMITTED_REFERENCE, reference / "reference.json")

    result = run_script(
        camvid, out_root, SEMI_SUPERVISED="mean_teacher", SUPERPIXEL_SIZE="8", BUDGET="30", ONLY="sp_random"
    )

    assert result.returncode == 0, result.stderr
    regime = out_root / "superpixel_8" / "cpu_inverse_sqrt_frequency_mean_teacher"
    config = json.loads((regime / "sp_random" / "seed_0" / "config.json").read_text())
    assert config["semi_supervised"] == "mean_teacher"
    assert config["acquisition"] == {"heuristic": "random", "superpixel_size": 8}
    assert not (out_root / "superpixel_8" / "cpu_inverse_sqrt_frequency").exists()  # the supervised regime's folder
    summary = json.loads((regime / "summary.json").read_text())
    assert set(summary["strategies"]) == {"sp_random"}
    assert summary["reference"]["seeds"] == 1  # the supervised reference: nothing is unlabelled when all is labelled


def test_a_committed_run_keeps_its_last_round_labels_so_they_can_be_trained_again_without_the_rounds(camvid, tmp_path):
    repository = tmp_path / "repository"  # a repository of its own with the script and the project's .gitignore
    (repository / "benchmarks" / "active_learning").mkdir(parents=True)
    script = shutil.copy(SCRIPT, repository / "benchmarks" / "active_learning" / "run_preset.sh")
    shutil.copy(REPO_ROOT / ".gitignore", repository / ".gitignore")
    git = ["git", "-C", str(repository), "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "the script"], check=True)
    settings = {"OUT_ROOT": "benchmarks/active_learning", "CODE": str(REPO_ROOT), "ONLY": "sp_random", "BUDGET": "20"}
    author = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com"}
    committer = {"GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}

    result = run_script(camvid, tmp_path, script=Path(script), COMMIT="1", **settings, **author, **committer)
    assert result.returncode == 0, result.stderr

    run = "benchmarks/active_learning/cpu_inverse_sqrt_frequency/sp_random/seed_0"
    tracked = subprocess.run([*git, "ls-files", run], check=True, capture_output=True, text=True).stdout.split()
    assert f"{run}/results.json" in tracked
    assert f"{run}/state/round_001.json" in tracked  # the last of the two rounds
    assert f"{run}/state/round_000.json" not in tracked
    assert not [path for path in tracked if path.endswith(".pt")]
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout

    result = run_script(camvid, tmp_path, script=Path(script), COMMIT="1", **settings, **author, **committer)
    assert result.returncode == 0 and "could not commit" not in result.stderr, result.stderr
    assert subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout == head, (
        "run again, the script finds the run committed and its summary unchanged: nothing to commit"
    )

    clone = tmp_path / "clone"  # what another machine gets: the labels, no checkpoint
    subprocess.run(["git", "clone", "-q", str(repository), str(clone)], check=True)
    rows = json.loads((clone / run / "results.json").read_text())["rows"]
    final_options = TINY_RUN + " --final-epochs 1 --final-min-steps 1"
    result = run_script(
        camvid,
        tmp_path,
        script=clone / "benchmarks" / "active_learning" / "run_preset.sh",
        SIMULATE_OPTIONS=final_options,
        **settings,
    )
    assert result.returncode == 0, result.stderr
    trained_again = json.loads((clone / run / "results.json").read_text())
    assert trained_again["rows"] == rows  # no round ran again
    assert trained_again["final"]["epochs"] == 1


# Each setting the script has committed results for, and the folders whose summaries it writes (relative to
# benchmarks/active_learning).
COMMITTED_SETTINGS = {
    "cpu": ({"CLASS_WEIGHTING": "none"}, ["cpu"]),
    "cpu_inverse_frequency": ({"CLASS_WEIGHTING": "inverse_frequency"}, ["cpu_inverse_frequency"]),
    "cpu_inverse_sqrt_frequency": (
        {"CLASS_WEIGHTING": "inverse_sqrt_frequency"},
        ["cpu_inverse_sqrt_frequency"],
    ),
    "gpu_inverse_sqrt_frequency": (
        {"PRESET": "gpu", "CLASS_WEIGHTING": "inverse_sqrt_frequency"},
        ["gpu_inverse_sqrt_frequency"],
    ),
    "gpu_retrain_inverse_sqrt_frequency": (
        {"PRESET": "gpu_retrain", "CLASS_WEIGHTING": "inverse_sqrt_frequency"},
        ["gpu_retrain_inverse_sqrt_frequency"],
    ),
    "superpixel_8": (
        {"SUPERPIXEL_SIZE": "8", "BUDGET": "2300", "CLASS_WEIGHTING": "inverse_sqrt_frequency"},
        ["superpixel_8/cpu_inverse_sqrt_frequency", "superpixel_8/cpu_inverse_sqrt_frequency/outline_480"],
    ),
    "superpixel_8_mean_teacher": (
        {
            "SEMI_SUPERVISED": "mean_teacher",
            "SUPERPIXEL_SIZE": "8",
            "BUDGET": "2300",
            "CLASS_WEIGHTING": "inverse_sqrt_frequency",
        },
        ["superpixel_8/cpu_inverse_sqrt_frequency_mean_teacher"],
    ),
}


SUMMARY_FILES = ("summary.md", "summary.json")


def tracked_files(pathspec: str) -> list[str]:
    """The paths, relative to the repository root, of the files git tracks that match ``pathspec``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", pathspec], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.decode()
    return list(filter(None, listed.split("\0")))


def committed_results(destination: Path) -> Path:
    """Copies the files git tracks under benchmarks/active_learning (runs still going in a checkout are left out)."""
    for name in tracked_files("benchmarks/active_learning"):
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / name, target)
    return destination / "benchmarks" / "active_learning"


def delete_summaries(out_root: Path, folders: list[str]) -> None:
    """So that a summary the command under test did not write cannot pass."""
    for folder in folders:
        for name in SUMMARY_FILES:
            (out_root / folder / name).unlink()


def assert_summaries_are_the_committed_ones(out_root: Path, folders: list[str]) -> None:
    for folder in folders:
        for name in SUMMARY_FILES:
            committed = (REPO_ROOT / "benchmarks" / "active_learning" / folder / name).read_text()
            assert (out_root / folder / name).read_text() == committed, f"{folder}/{name} differs from its runs"


@pytest.mark.parametrize("setting", sorted(COMMITTED_SETTINGS))
def test_every_committed_summary_is_what_the_script_writes_from_the_committed_runs(setting, tmp_path):
    """summary.md and summary.json byte for byte (the plots too with matplotlib 3.11.2, checked by hand: PNG bytes
    depend on the matplotlib version, so they are not compared here)."""
    settings, folders = COMMITTED_SETTINGS[setting]
    out_root = committed_results(tmp_path)
    delete_summaries(out_root, folders)

    result = run_script(tmp_path / "no-camvid", out_root, SUMMARY_ONLY="1", **settings)

    assert result.returncode == 0, result.stderr
    assert_summaries_are_the_committed_ones(out_root, folders)


# Summaries written by the `simulate --plot` command in their folder's README, over every run of the folder and the
# inverse-sqrt-frequency reference, rather than by the script.
SUMMARIES_OF_README_COMMANDS = ["final_labels/cpu_inverse_sqrt_frequency", "mode_ceilings/cpu_inverse_sqrt_frequency"]
# Written by the fixed-32-step code before summary.json existed; kept as they are, checked by nothing.
ARCHIVED_SUMMARIES = ["archive/cpu_fixed_32_steps", "archive/cpu_fixed_32_steps/semi_supervised"]


@pytest.mark.parametrize("folder", SUMMARIES_OF_README_COMMANDS)
def test_every_summary_of_a_readme_command_is_what_that_command_writes_from_the_committed_runs(folder, tmp_path):
    out_root = committed_results(tmp_path)
    summary_folder = out_root / folder
    delete_summaries(out_root, [folder])
    runs = sorted(summary_folder.glob("*/seed_*/")) + sorted(
        (out_root / "cpu_inverse_sqrt_frequency" / "reference").glob("seed_*/")
    )

    result = subprocess.run(
        [sys.executable, "-m", "ls_al_backend.cli", "simulate", "--pool", "x", "--eval", "x"]
        + ["--out", str(summary_folder), "--plot", *map(str, runs)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert result.returncode == 0, result.stderr
    assert_summaries_are_the_committed_ones(out_root, [folder])


# The confirmatory comparison (confirmatory/PROTOCOL.md): run_preset.sh's summary of its runs and the verdict that
# `python -m ls_al_backend.simulation.confirmatory` writes; each compared once committed (its runs take sessions).
CONFIRMATORY_SUMMARIES = ["confirmatory/superpixel_8/cpu_inverse_sqrt_frequency", "confirmatory"]


def test_the_confirmatory_summaries_are_what_their_commands_write_from_the_committed_runs(tmp_path):
    out_root = committed_results(tmp_path)
    committed = [folder for folder in CONFIRMATORY_SUMMARIES if (out_root / folder / "summary.md").is_file()]
    delete_summaries(out_root, committed)
    if CONFIRMATORY_SUMMARIES[0] in committed:
        settings = {"SUPERPIXEL_SIZE": "8", "BUDGET": "2300", "SUMMARY_ONLY": "1"}
        result = run_script(tmp_path / "no-camvid", out_root / "confirmatory", **settings)
        assert result.returncode == 0, result.stderr

    verdict = subprocess.run(
        [sys.executable, "-m", "ls_al_backend.simulation.confirmatory", str(out_root / "confirmatory")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert verdict.returncode == 0, verdict.stderr
    assert "rounds_models: " in verdict.stdout and "trained_again: " in verdict.stdout
    assert_summaries_are_the_committed_ones(out_root, committed)


def test_every_committed_summary_is_checked_against_its_runs_or_archived():
    """A new setting's summary must join one of the lists above, or this fails."""
    committed = {
        str(Path(name).parent.relative_to("benchmarks/active_learning"))
        for name in tracked_files("benchmarks/active_learning/**/summary.md")
    }
    of_the_script = {folder for _, folders in COMMITTED_SETTINGS.values() for folder in folders}

    checked_once_committed = set(CONFIRMATORY_SUMMARIES)
    assert committed - checked_once_committed == of_the_script | set(SUMMARIES_OF_README_COMMANDS) | set(
        ARCHIVED_SUMMARIES
    )


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"SUPERPIXEL_SIZE": "eight"}, "SUPERPIXEL_SIZE and BUDGET must be positive whole numbers, got 'eight'"),
        ({"SEMI_SUPERVISED": "pseudo_labels"}, "SEMI_SUPERVISED must be none or mean_teacher, got 'pseudo_labels'"),
    ],
)
def test_bad_regime_settings_are_refused_before_anything_runs(setting, message, camvid, tmp_path):
    result = run_script(camvid, tmp_path / "results", **setting)

    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "results").exists()
