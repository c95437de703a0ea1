"""summary.md and the learning curves of the confirmatory comparison, from a hand-written summary payload."""

from __future__ import annotations

import pytest

from ls_al_backend.simulation.confirmatory import PRECISION_NOTE, PROTOCOLS
from ls_al_backend.simulation.confirmatory_report import plot_curves, summary_markdown


def payload(verdicts: dict, curves: dict | None = None) -> dict:
    protocol = PROTOCOLS["cpu"]
    return {
        "protocol": "cpu",
        "arms": {"acquisition": protocol.acquisition_arm, "baseline": protocol.baseline_arm},
        "seeds": list(protocol.seeds),
        "config": dict(protocol.config),
        "judged_clicks": protocol.judged_clicks,
        "rule": {"click_share_limit": 0.05, "min_gap_points": 3.0, "min_welch_t": 2.0},
        "verdict": verdicts,
        "not_counted": [],
        "restarted": [],
        "cpu_hours": 14.5,
        "machines": ["AMD EPYC, native bf16 flags: avx512_bf16"],
        "code": ["commit 7041826, 0 uncommitted file(s) in ls_al_backend"],
        "precisions": ["fp32"],
        "precision_note": PRECISION_NOTE,
        "curves": curves or {"sp_entropy_classbal": None, "sp_random": None},
        "runs": [],
    }


def arm(mean: float, std: float) -> dict:
    return {"seeds": 5, "mean": mean, "std": std, "values": []}


def test_markdown_states_each_verdict_with_its_numbers():
    met = {"verdict": "met", "gap": 6.1, "welch_t": 4.25, "welch_df": 7.9, "seed_weighted_pooled_std": 2.3}
    met |= {"acquisition": arm(53.1, 1.4), "baseline": arm(47.0, 3.0)}
    text = summary_markdown(payload({"rounds_models": met, "trained_again": {"verdict": "incomplete"}}))
    assert (
        "| the rounds' models | **met** | 53.1 ± 1.4 (5 seeds) | 47.0 ± 3.0 (5 seeds) | +6.1 | 4.25 | 7.9 | 2.3 |"
        in (text)
    )
    assert "| the final labels trained again | **incomplete** |" in text
    assert "8x8 superpixels at 240 px" in text and "judged at 11500 clicks" in text and "precision fp32" in text
    assert "- none: every run of the protocol is in" in text and "14.50 hours" in text and PRECISION_NOTE in text
    assert "learning_curves.png" not in text  # no finished run, no plot


def test_the_plot_holds_both_arms(tmp_path):
    pytest.importorskip("matplotlib")
    curve = {"seeds": 2, "clicks": [2300, 4600], "miou_mean": [30.0, 35.0], "miou_std": [1.0, None]}
    curves = {
        "sp_entropy_classbal": curve | {"trained_again": [40.0, 42.0]},
        "sp_random": curve | {"trained_again": []},
    }
    summary = payload({"rounds_models": {"verdict": "incomplete"}, "trained_again": {"verdict": "incomplete"}}, curves)
    out = plot_curves(summary, tmp_path / "plots" / "learning_curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![learning curves](learning_curves.png)" in summary_markdown(summary)
