"""`benchmarks/active_learning/goal_across_regimes.py`: the goal's verdict in every measured regime, side by side,
read from the committed summaries; the committed table, the benchmark README's copy and the top-level summary.json
are what it writes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO_ROOT / "benchmarks" / "active_learning"


def load_script():
    spec = importlib.util.spec_from_file_location("goal_across_regimes", BENCHMARKS / "goal_across_regimes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


goal_across_regimes = load_script()

# Summaries with a goal verdict that are not a regime of their own: one-seed retrainings of another regime's labels,
# and the confirmatory comparison's runs (judged by their own pre-registered rule, summary.json's "confirmatory").
NOT_A_REGIME = {"final_labels/cpu_inverse_sqrt_frequency", "confirmatory/superpixel_8/cpu_inverse_sqrt_frequency"}


def test_the_committed_table_is_what_the_script_writes_from_the_committed_summaries():
    committed = (BENCHMARKS / "goal_across_regimes.md").read_text()

    assert goal_across_regimes.document() == committed, "run benchmarks/active_learning/goal_across_regimes.py"


def test_the_benchmark_readme_shows_the_tables_as_written():
    readme = (BENCHMARKS / "README.md").read_text()

    assert goal_across_regimes.goal_table() in readme
    assert goal_across_regimes.converged_table() in readme


def test_the_committed_summary_is_what_the_script_writes_and_names_the_claims_regime():
    committed = json.loads((BENCHMARKS / "summary.json").read_text())

    assert committed == json.loads(json.dumps(goal_across_regimes.summary_payload()))
    claim = committed["claim"]
    assert claim["regime"] == goal_across_regimes.CLAIM_REGIME
    assert claim["clears_every_random_baseline"], "the README's claim must rest on a regime whose gaps all count"
    assert all(gap["seeds"] >= 2 and gap["welch_t"] is not None for gap in claim["gaps_to_random"].values())
    assert committed["confirmatory"] == {
        "status": "running",
        "path": "benchmarks/active_learning/confirmatory/",
        "protocol": "benchmarks/active_learning/confirmatory/PROTOCOL.md",
    }
    assert set(committed["regimes"]) == {regime.folder for regime in goal_across_regimes.REGIMES}


def test_the_claim_reads_its_regimes_goal_and_says_when_a_gap_does_not_count(tmp_path):
    goal = {
        "best_strategy": "sp_entropy_classbal",
        "round": 0,
        "clicks": 500.0,
        "click_share_of_full": 0.04,
        "miou_mean": 0.5,
        "share_of_reference": 0.8333,
        "gaps_to_random": {
            "sp_random": {"gap": 0.05, "pooled_std": 0.03, "welch_t": 2.0, "welch_df": 4.0, "met": False},
            "image_random": {"gap": 0.08, "pooled_std": 0.01, "welch_t": 9.0, "welch_df": 3.0, "met": True},
        },
        "met": False,
    }
    strategies = {"sp_entropy_classbal": entry(3, 0.02), "sp_random": entry(3, 0.04), "image_random": entry(4, 0.0)}
    write(tmp_path, goal_across_regimes.CLAIM_REGIME, summary(goal, strategies))

    claim = goal_across_regimes.claim(tmp_path)

    assert (claim["strategy"], claim["seeds"], claim["miou_std"]) == ("sp_entropy_classbal", 3, 0.02)
    assert claim["gaps_to_random"]["image_random"]["seeds"] == 4
    assert not claim["clears_every_random_baseline"] and not claim["goal_met"]
    assert claim["verdict"] == "does not clear every random baseline; goal not met: 83% of the reference"


def test_every_committed_summary_with_a_goal_verdict_is_a_row_or_named_as_not_a_regime():
    """A regime's row in the first table; where the regime was trained again, in the converged one too."""
    tracked = subprocess.run(
        ["git", "ls-files", "benchmarks/active_learning/*summary.json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    with_goal = {
        str(Path(path).parent.relative_to("benchmarks/active_learning"))
        for path in tracked
        if (summary := json.loads((REPO_ROOT / path).read_text())).get("goal") or summary.get("goal_converged")
    }
    rows = {regime.folder for regime in goal_across_regimes.REGIMES}

    assert with_goal - NOT_A_REGIME == rows


def summary(goal: dict, strategies: dict, reference_seeds: int = 3) -> dict:
    return {
        "reference": {"miou_mean": 0.6, "miou_std": 0.01, "seeds": reference_seeds},
        "strategies": strategies,
        "goal": goal,
    }


def entry(seeds: int, std: float, final_labels_retrained: dict | None = None) -> dict:
    return {"seeds": seeds, "miou_std_per_round": [std], "final_labels_retrained": final_labels_retrained}


def write(root: Path, folder: str, content: dict) -> None:
    (root / folder).mkdir(parents=True)
    (root / folder / "summary.json").write_text(json.dumps(content))


def test_a_row_reads_the_verdict_the_gaps_and_the_best_strategy_against_its_own_modes_ceiling(tmp_path):
    goal = {
        "best_strategy": "mc_entropy_pixbal",
        "round": 0,
        "clicks": 500.0,
        "click_share_of_full": 0.04,
        "miou_mean": 0.55,
        "share_of_reference": 0.9167,
        "gaps_to_random": {"sp_random": {"gap": 0.08, "pooled_std": 0.02, "met": True}},
        "met": True,
    }
    ceilings = {
        "sp_dominant_every_superpixel": entry(2, 0.0, {"miou_mean": 0.5, "miou_std": 0.01, "seeds": 2}),
        "mc_every_superpixel": entry(3, 0.0, {"miou_mean": 0.58, "miou_std": 0.02, "seeds": 3}),
    }
    write(tmp_path, "regime", summary(goal, {"mc_entropy_pixbal": entry(3, 0.03), "sp_random": entry(3, 0.01)}))
    write(tmp_path, "ceilings", summary(None, ceilings))
    regime = goal_across_regimes.Regime("regime", "a regime", ceilings="ceilings")

    row = goal_across_regimes.regime_row(regime, tmp_path)

    assert row == [
        "a regime",
        "mc_entropy_pixbal (3 seeds), round 0: 500 clicks, 4.00% of full",
        "55.0 ± 3.0",
        "92% of 60.0 ± 1.0 (3 seeds)",
        "sp_random +8.0 (pooled std 2.0)",
        "58.0 ± 2.0, 3 seeds (97% of the reference); best reaches 95% of it",
        "**met**",
    ]


def test_a_one_seed_row_shows_no_spread_and_an_unmeasured_ceiling(tmp_path):
    goal = {
        "best_strategy": "sp_entropy_classbal",
        "round": 0,
        "clicks": 500.0,
        "click_share_of_full": 0.04,
        "miou_mean": 0.5,
        "share_of_reference": 0.8333,
        "gaps_to_random": {"image_random": {"gap": -0.05, "pooled_std": 0.0, "met": False}},
        "met": False,
    }
    strategies = {"sp_entropy_classbal": entry(1, 0.0), "image_random": entry(1, 0.0)}
    write(tmp_path, "regime", summary(goal, strategies, reference_seeds=1))

    row = goal_across_regimes.regime_row(goal_across_regimes.Regime("regime", "a regime"), tmp_path)

    assert row[1:] == [
        "sp_entropy_classbal (1 seed), round 0: 500 clicks, 4.00% of full",
        "50.0",
        "83% of 60.0 ± 1.0 (1 seed)",
        "image_random -5.0 (one seed: no spread)",
        "not measured",
        "not met",
    ]


def test_a_converged_row_gives_the_retrained_verdict_and_names_the_random_baselines_not_trained_again(tmp_path):
    converged = {
        "best_strategy": "sp_entropy_classbal",
        "seeds": 3,
        "epochs": [40],
        "clicks": 11500.0,
        "click_share_of_full": 0.0482,
        "miou_mean": 0.53,
        "miou_std": 0.02,
        "share_of_reference": 0.8833,
        "gaps_to_random": {"sp_random_once": {"gap": 0.02, "pooled_std": 0.025, "seeds": 2, "met": False}},
        "stood_in_for": {"sp_random": "sp_random_once"},
        "not_trained_again": ["image_random", "mc_random"],
        "met": False,
    }
    write(tmp_path, "regime", summary(None, {}) | {"goal_converged": converged})
    write(tmp_path, "not_trained_again", summary(None, {}) | {"goal_converged": None})
    regimes = [goal_across_regimes.Regime(folder, folder) for folder in ("regime", "not_trained_again")]

    rows = [goal_across_regimes.converged_row(regime, tmp_path) for regime in regimes]

    assert rows == [
        [
            "regime",
            "sp_entropy_classbal (3 seeds trained again, 40 epochs): 11500 clicks, 4.82% of full",
            "53.0 ± 2.0",
            "88% of 60.0 ± 1.0",
            "sp_random_once +2.0 (pooled std 2.5), 2 seeds (standing for sp_random, the same query mode)",
            "image_random, mc_random",
            "not met",
        ],
        None,
    ]
