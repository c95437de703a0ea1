"""The label-savings goal: judged at the last round within 5% of full clicks, on the rounds' models and converged,
with the seed-weighted pooled std and Welch's t beside it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ls_al_backend.simulation import summarise, summary_table
from ls_al_backend.simulation.goal import compare_arms
from ls_al_backend.simulation.stats import seed_weighted_pooled_std, welch
from tests.simulation.fabricated_runs import in_query_mode, trained_again, with_clicks, write_runs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_goal_is_judged_at_the_last_round_within_five_percent_of_full_clicks(tmp_path):
    files = write_runs(tmp_path, [("bald", "bald", 0, 0.1), ("rand", "random", 0, 0)])
    for folder in files[:2]:
        payload = json.loads((folder / "results.json").read_text())
        for row, share in zip(payload["rows"], (0.02, 0.045, 0.06), strict=True):
            row["click_share_of_full"] = share
        (folder / "results.json").write_text(json.dumps(payload))
    goal = summarise(files)["goal"]
    assert goal["round"] == 1 and goal["clicks"] == 20, "round 2 spends 6% of full: past the goal's budget"
    assert goal["gaps_to_random"]["rand"]["gap"] == pytest.approx(0.0), "same round, same mIoU"


def test_the_goal_on_converged_models_compares_the_final_labels_trained_again_at_the_same_clicks(tmp_path):
    runs = [("bald", "bald", 0, 0), ("bald", "bald", 1, 0), ("rand", "random", 0, 0), ("rand", "random", 1, 0)]
    runs += [("image_random", "random", 0, 0), ("image_random", "random", 1, 0)]
    runs += [("random_far", "random", 0, 0), ("random_far", "random", 1, 0)]
    files = write_runs(tmp_path, runs)  # every run labels 30 clicks (3% of full); the reference is 0.6
    for folder in files[4:6]:
        in_query_mode(folder, "dense_brush")
    assert summarise(files)["goal_converged"] is None, "nothing trained again"
    for folder, miou in zip(files[:4], (0.56, 0.58, 0.50, 0.51), strict=True):
        trained_again(folder, miou)
    for folder in files[6:8]:
        trained_again(folder, 0.57, clicks=40.0)  # beyond 5% of the best one's clicks: not compared

    converged = summarise(files)["goal_converged"]

    assert converged["best_strategy"] == "bald" and converged["seeds"] == 2 and converged["clicks"] == 30
    assert converged["miou_mean"] == pytest.approx(0.57) and converged["share_of_reference"] == pytest.approx(0.95)
    assert set(converged["gaps_to_random"]) == {"rand"}
    assert converged["gaps_to_random"]["rand"]["gap"] == pytest.approx(0.065)
    assert converged["gaps_to_random"]["rand"]["met"], "6.5 points, pooled std 1.1"
    assert converged["not_trained_again"] == ["image_random"], "random_far's clicks are not the same"
    assert converged["stood_in_for"] == {}
    assert not converged["met"], "a random baseline left out is not beaten"
    assert "random baselines not trained again: image_random; **not met**" in summary_table(files)

    for folder in files[4:6]:
        trained_again(folder, 0.52)
    converged = summarise(files)["goal_converged"]
    assert converged["met"] and converged["not_trained_again"] == []


def test_a_random_baseline_trained_again_stands_for_the_random_baselines_of_its_query_mode(tmp_path):
    runs = [("bald", "bald", 0, 0), ("bald", "bald", 1, 0), ("rand", "random", 0, 0), ("rand", "random", 1, 0)]
    runs += [("rand_once", "random", 0, 0), ("rand_once", "random", 1, 0)]
    runs += [("image_random", "random", 0, 0), ("image_random", "random", 1, 0)]
    runs += [("rand_cheaper", "random", 0, 0), ("rand_cheaper", "random", 1, 0)]
    files = write_runs(tmp_path, runs)
    for folder in files[6:8]:
        in_query_mode(folder, "image")  # the legacy name of dense_brush
    for folder in files[8:10]:
        with_clicks(folder, 20.0)
    for folder, miou in zip([*files[:2], *files[4:6]], (0.56, 0.58, 0.50, 0.51), strict=True):
        trained_again(folder, miou)

    summary = summarise(files)
    converged = summary["goal_converged"]

    assert summary["strategies"]["image_random"]["query_mode"] == "dense_brush"
    assert converged["stood_in_for"] == {"rand": "rand_once"}, "random regions drawn round by round or at once"
    assert converged["not_trained_again"] == ["image_random", "rand_cheaper"], (
        "whole images are another query mode; 20 clicks are another budget, and a cheaper baseline counts"
    )
    assert set(converged["gaps_to_random"]) == {"rand_once"} and not converged["met"]
    assert "(rand_once stands for rand: the same query mode)" in summary_table(files)

    for folder in [*files[6:8], *files[8:10]]:
        trained_again(folder, 0.5)
    assert summarise(files)["goal_converged"]["met"]


def test_a_gap_is_judged_with_the_seed_weighted_pooled_std_and_welch_beside_it():
    """Four seeds of std 0.8 points against six of std 6.1: the unweighted pooled std (4.4) would let a 9-point gap
    count, the seed-weighted one (4.8, the six seeds weigh 5 / 8) does not: twice it is 9.7."""
    best = [0.53 + d for d in (-0.01, 0.0, 0.0, 0.01)]  # mean 0.53
    other = [0.44 + d for d in (-0.08, -0.05, -0.02, 0.02, 0.05, 0.08)]  # mean 0.44
    compared = compare_arms(0.09, [round(v, 4) for v in best], [round(v, 4) for v in other])

    assert compared["pooled_std"] == pytest.approx(seed_weighted_pooled_std(best, other), abs=1e-4)
    unweighted = math.sqrt((np.var(best, ddof=1) + np.var(other, ddof=1)) / 2)
    assert 0.09 > 2 * unweighted and compared["pooled_std"] == pytest.approx(0.0485, abs=1e-4)
    assert not compared["met"], "9.0 is inside twice the seed-weighted pooled std"
    assert compared["welch_t"] == pytest.approx(welch(best, other).t, abs=0.01) and compared["welch_df"] > 5

    assert compare_arms(0.12, best, other)["met"], "12 points clear it"
    one_seed = compare_arms(0.2, [0.6], other)
    assert one_seed == {"gap": 0.2, "pooled_std": None, "welch_t": None, "welch_df": None, "met": False}


def test_the_goal_line_of_the_summary_shows_the_pooled_std_and_welchs_t(tmp_path):
    runs = [("bald", "bald", 0, 0.1), ("bald", "bald", 1, 0.12), ("rand", "random", 0, 0), ("rand", "random", 1, 0.01)]
    files = write_runs(tmp_path, runs, 0.58)

    gap = summarise(files)["goal"]["gaps_to_random"]["rand"]

    assert gap["pooled_std"] == pytest.approx(0.0112, abs=1e-4) and gap["met"]
    assert f"rand +10.5 (pooled std 1.1, Welch t {gap['welch_t']:.1f}, df {gap['welch_df']:.1f})" in summary_table(
        files
    )
