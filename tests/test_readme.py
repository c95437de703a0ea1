"""README.md is a quickstart: at most 250 lines, the two set-up commands, no benchmark narrative, and every number
it states about measurements read from a committed summary file.

The measured sections lie between the ``<!-- measured: ... -->`` markers. This test computes, from the committed
``summary.json`` files, each phrase the README states there and checks that the README shows it; then every number
between the markers must be one of the numbers of those phrases (or of the regime settings the summaries name), so
a number typed by hand, or one left behind when a summary changes, fails here.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
BENCHMARKS = REPO_ROOT / "benchmarks" / "active_learning"
START, END = "<!-- measured: every number", "<!-- measured: end -->"
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
#: What the README calls each random baseline of the claim.
BASELINE_WORDS = {"sp_random": "random superpixels", "image_random": "random whole images"}


def summary(folder: str = "") -> dict[str, Any]:
    return json.loads((BENCHMARKS / folder / "summary.json").read_text())


def points(share: float) -> str:
    return f"{100 * share:.1f}"


def measured_section() -> str:
    text = README.read_text()
    return text[text.index(START) : text.index(END)]


def claim_phrases() -> list[str]:
    """The evidence section's phrases, from ``benchmarks/active_learning/summary.json``'s claim."""
    top = summary()
    claim, rule = top["claim"], top["goal_rule"]
    phrases = [
        f"({claim['setting']})",
        f"reached {points(claim['miou_mean'])} ± {points(claim['miou_std'])} mIoU",
        f"with {claim['clicks']:,.0f} clicks ({100 * claim['click_share_of_full']:.2f}% of answering every region)",
        f"{claim['seeds']} seeds each, on the rounds' models",
        f"the label-savings goal's {100 * rule['reference_share_at_least']:.0f}% of full supervision",
        f"this is {100 * claim['share_of_reference']:.0f}% of a one-seed",
    ]
    assert claim["reference_seeds"] == 1, "the README says a one-seed reference"
    for name, gap in claim["gaps_to_random"].items():
        assert gap["seeds"] == claim["seeds"], "the README says each arm has the same seeds"
        phrases.append(f"{100 * gap['gap']:+.1f} over {BASELINE_WORDS[name]}")
        phrases.append(f"pooled std {points(gap['pooled_std'])}, Welch t {gap['welch_t']:.1f}")
    return phrases


def converged_phrases() -> list[str]:
    """How the lead over random regions shrank when the 8x8 regime's labels were trained again."""
    folder = "superpixel_8/cpu_inverse_sqrt_frequency"
    regime, setting = summary(folder), summary()["regimes"][folder]["setting"]
    rounds = regime["goal"]["gaps_to_random"]["sp_random"]
    converged = regime["goal_converged"]["gaps_to_random"]["sp_random_11500_clicks_once"]
    assert not converged["met"] and converged["gap"] < 2 * converged["pooled_std"], "the README says inside 2 std"
    return [f"(in the {setting} regime,", f"from {100 * rounds['gap']:+.1f} to\n{100 * converged['gap']:+.1f}"]


def table_phrases() -> list[str]:
    """The cells of "which mode and strategy for which project"."""
    eight, sixteen = "superpixel_8/cpu_inverse_sqrt_frequency", "cpu"
    small, unweighted = summary(eight)["strategies"], summary(sixteen)["strategies"]
    settings = summary()["regimes"]
    multiclass_lead = small["mc_entropy_pixbal"]["final_miou_mean"] - small["mc_random"]["final_miou_mean"]
    retrained_gain = (
        small["mc_random_11500_clicks_once"]["final_labels_retrained"]["miou_mean"]
        - small["mc_random"]["final_miou_mean"]
    )
    assert small["mc_entropy_pixbal"]["final_labels_retrained"] is None, "the README says it was not trained again"
    assert small["mc_entropy_pixbal"]["seeds"] == small["mc_random"]["seeds"] == 3
    assert small["image_random"]["seeds"] == small["image_entropy"]["seeds"] == 3
    assert unweighted["px_balent_pixelpick"]["seeds"] == unweighted["sp_random"]["seeds"] == 3
    assert unweighted["px_balent_pixelpick"]["final_clicks"] == unweighted["sp_random"]["final_clicks"]
    return [
        f"{100 * multiclass_lead:+.1f} mIoU over random multi-class regions on the rounds' models",
        f"({settings[eight]['setting']}; 3 seeds each)",
        f"random multi-class regions gain {100 * retrained_gain:.1f} when trained again",
        f"random whole images reached {points(small['image_random']['final_miou_mean'])} mIoU against "
        f"{points(small['image_entropy']['final_miou_mean'])} in the model's entropy order",
        f"{points(unweighted['px_balent_pixelpick']['final_miou_mean'])} mIoU against "
        f"{points(unweighted['sp_random']['final_miou_mean'])} for random superpixels at "
        f"{unweighted['sp_random']['final_clicks']:.0f} clicks ({settings[sixteen]['setting']}; 3 seeds each)",
    ]


def test_every_measured_phrase_is_read_from_the_committed_summaries():
    section = measured_section()
    flat = " ".join(section.split())

    missing = [p for p in claim_phrases() + converged_phrases() + table_phrases() if " ".join(p.split()) not in flat]

    assert not missing, f"README.md does not show {missing}: rewrite them from the summaries"


def test_no_number_in_the_measured_sections_is_typed_by_hand():
    phrases = claim_phrases() + converged_phrases() + table_phrases()
    allowed = {number for phrase in phrases for number in NUMBER.findall(phrase)}
    # the screenshot's and the plot's file names carry no measurement
    section = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", measured_section().split("-->", 1)[1])

    typed = sorted(set(NUMBER.findall(section)) - allowed)

    assert not typed, f"numbers in README.md's measured sections that no summary gives: {typed}"


def test_the_readme_is_a_quickstart_with_its_two_commands_and_one_plot():
    text = README.read_text()
    evidence = text[text.index("## The evidence") : text.index(END)]
    prose = [line for line in evidence.splitlines()[1:] if line.strip() and not line.startswith("![")]

    assert len(text.splitlines()) <= 250
    assert "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/ls-al-backend serve" in text
    assert "bash scripts/test.sh" in text  # .ci/run greps for it
    assert evidence.count("![") == 1 and len(prose) <= 8
    assert "docs/screenshots/superpixel_dominant-trained.png" in text
    assert "benchmarks/active_learning/confirmatory/" in evidence and "Not yet confirmed" in evidence


def test_every_local_link_of_the_readme_points_at_a_committed_file():
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    local = [target for target in targets if "://" not in target]

    assert local and all((REPO_ROOT / target).is_file() for target in local), local
