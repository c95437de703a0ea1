"""summary.md's tables: how a gap of the goal is shown beside the seeds' spread."""

from __future__ import annotations

from ls_al_backend.simulation.tables import format_percent, gap_spread


def test_a_gap_shows_its_seed_weighted_pooled_std_and_welchs_t_or_that_one_seed_has_no_spread():
    gap = {"gap": 0.09, "pooled_std": 0.0471, "welch_t": 3.69, "welch_df": 5.3, "met": False}

    assert gap_spread(gap) == "pooled std 4.7, Welch t 3.7, df 5.3"
    assert gap_spread(gap | {"welch_t": None, "welch_df": None}) == "pooled std 4.7, Welch t inf, df -"
    assert gap_spread(gap | {"pooled_std": None}) == "one seed: no spread"


def test_a_share_is_shown_as_a_percentage_with_its_std():
    assert format_percent(0.528, 0.038) == "52.8 ± 3.8"
    assert format_percent(0.528, None) == "52.8" and format_percent(None, None) == "-"
