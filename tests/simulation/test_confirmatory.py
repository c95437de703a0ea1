"""The confirmatory comparison judged from fabricated runs: met, not met, incomplete (missing, unfinished, another
precision or regime), restarts, cost and the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ls_al_backend.simulation.confirmatory import PROTOCOLS, judge, main, summarise_protocol, write_confirmatory_summary

CPU = PROTOCOLS["cpu"]
FULL_CLICKS = 11500 / 0.0482


def protocol_config(**overrides) -> dict:
    """A run config as ``simulate`` writes it, holding every value the CPU protocol fixes."""
    config = {key: value for key, value in CPU.config.items() if not key.startswith("acquisition.")}
    config["acquisition"] = {"heuristic": "predictive_entropy", "superpixel_size": 8}
    return config | overrides


def write_run(
    root: Path,
    arm: str,
    seed: int,
    last: float,
    again: float | None,
    *,
    precision="fp32",
    rounds=5,
    config: dict | None = None,
    code: str = CPU.code_commit,
) -> Path:
    """``results.json`` of one run whose mIoU rises to ``last`` at round 4 (11,500 clicks), with its final labels
    trained again to ``again`` (None: not yet), 600 s a round and 1200 s of training again."""
    folder = root / CPU.runs_dir / arm / f"seed_{seed}"
    folder.mkdir(parents=True)
    rows = [
        {
            "round": i,
            "clicks_cumulative": 2300.0 * (i + 1),
            "click_share_of_full": 2300.0 * (i + 1) / FULL_CLICKS,
            "miou": last - 0.02 * (4 - i),
            "precision": precision,
            "seconds": 600.0,
        }
        for i in range(rounds)
    ]
    payload = {"kind": "active_learning", "strategy": arm, "seed": seed, "config": config or protocol_config()}
    payload["rows"] = rows
    if again is not None:
        payload["final"] = {"after_round": 4, "miou": again, "precision": precision, "seconds": 1200.0}
    (folder / "results.json").write_text(json.dumps(payload))
    (folder / "code_version.txt").write_text(
        f"commit {code}, 0 uncommitted file(s) in ls_al_backend\ncpu: AMD EPYC, native bf16 flags: avx512_bf16 \n"
    )
    return folder


def write_all(root: Path, entropy: list[float], random: list[float], lift: float = 0.01) -> None:
    """Every run of the protocol: last-round mIoU per seed (fractions), trained again ``lift`` higher."""
    for seed, high, low in zip(CPU.seeds, entropy, random, strict=True):
        write_run(root, "sp_entropy_classbal", seed, high, high + lift)
        write_run(root, "sp_random", seed, low, low + lift)


ENTROPY = [0.531, 0.540, 0.522, 0.553, 0.519]
RANDOM = [0.470, 0.441, 0.502, 0.463, 0.488]


def test_a_clear_lead_is_met_on_both_judgements(tmp_path):
    write_all(tmp_path, ENTROPY, RANDOM)
    summary = summarise_protocol(tmp_path, CPU)
    for name in ("rounds_models", "trained_again"):
        result = summary["verdict"][name]
        assert result["verdict"] == "met"
        assert result["gap"] == pytest.approx(100 * (sum(ENTROPY) - sum(RANDOM)) / 5, abs=1e-3)
        assert result["welch_t"] >= 2 and result["acquisition"]["seeds"] == result["baseline"]["seeds"] == 5
    assert summary["not_counted"] == [] and summary["restarted"] == []
    assert summary["cpu_hours"] == pytest.approx(10 * (5 * 600 + 1200) / 3600, abs=0.01)
    assert summary["precisions"] == ["fp32"] and summary["machines"] == ["AMD EPYC, native bf16 flags: avx512_bf16"]
    assert summary["curves"]["sp_random"]["clicks"] == [2300, 4600, 6900, 9200, 11500]


def test_a_small_or_noisy_lead_is_not_met(tmp_path):
    small = tmp_path / "small"  # t is large but the gap is 2 points
    write_all(small, ENTROPY, [value + 0.042 for value in RANDOM])
    result = summarise_protocol(small, CPU)["verdict"]["rounds_models"]
    assert result["verdict"] == "not met" and 1.5 < result["gap"] < 3
    noisy = tmp_path / "noisy"  # the gap is 4 points but one random seed sits far above the others
    write_all(noisy, [0.50] * 4 + [0.51], [0.40, 0.58, 0.44, 0.46, 0.42])
    result = summarise_protocol(noisy, CPU)["verdict"]["trained_again"]
    assert result["verdict"] == "not met" and result["gap"] >= 3 and result["welch_t"] < 2


def test_judge_boundaries():
    assert judge([53.0, 54.0], [50.0, 51.0], complete=True)["verdict"] == "met"  # gap exactly 3, t about 4.2
    assert judge([52.9, 53.9], [50.0, 51.0], complete=True)["verdict"] == "not met"
    assert judge([53.0, 54.0], [50.0, 51.0], complete=False) == {"verdict": "incomplete"}


def test_missing_unfinished_or_off_protocol_runs_leave_the_verdict_incomplete(tmp_path):
    write_all(tmp_path, ENTROPY, RANDOM)
    random_104 = tmp_path / CPU.runs_dir / "sp_random" / "seed_104"
    (random_104 / "results.json").unlink()  # a folder without results: started, not finished
    (random_104 / "restarts.txt").write_text("2026-12-08T03:20:00Z rerun with the same seed\n")  # not read yet
    (random_104.parent / "seed_100" / "restarts.txt").write_text("2026-12-08T03:20:00Z rerun with the same seed\n")
    entropy_103 = tmp_path / CPU.runs_dir / "sp_entropy_classbal" / "seed_103"
    for path in entropy_103.iterdir():
        path.unlink()
    entropy_103.rmdir()
    summary = summarise_protocol(tmp_path, CPU)
    assert {result["verdict"] for result in summary["verdict"].values()} == {"incomplete"}
    assert summary["not_counted"] == ["sp_entropy_classbal seed 103: not finished", "sp_random seed 104: not finished"]
    assert summary["restarted"] == ["sp_random seed 100: 2026-12-08T03:20:00Z rerun with the same seed"]
    assert summary["curves"]["sp_random"]["seeds"] == 4

    other = tmp_path / "other"
    write_all(other, ENTROPY, RANDOM)
    for arm, seed in (("sp_random", 100), ("sp_entropy_classbal", 101), ("sp_random", 102), ("sp_random", 103)):
        (other / CPU.runs_dir / arm / f"seed_{seed}" / "results.json").unlink()
        (other / CPU.runs_dir / arm / f"seed_{seed}" / "code_version.txt").unlink()
        (other / CPU.runs_dir / arm / f"seed_{seed}").rmdir()
    write_run(other, "sp_random", 100, 0.47, 0.48, precision="bf16")
    write_run(other, "sp_entropy_classbal", 101, 0.54, None)  # rounds done, not yet trained again
    write_run(other, "sp_random", 102, 0.50, 0.51, config=protocol_config(budget=600, initial_budget=600))
    write_run(other, "sp_random", 103, 0.50, 0.51, code="b2f6b4b7bcc909ab1b4939ad4c1a8f12aac79387")  # not frozen
    summary = summarise_protocol(other, CPU)
    assert summary["verdict"]["rounds_models"] == {"verdict": "incomplete"}
    assert summary["not_counted"] == [
        "sp_random seed 100: invalid; precision bf16, the protocol's is fp32",
        "sp_entropy_classbal seed 101: not finished",
        "sp_random seed 102: invalid; budget is 600, the protocol's is 2300; initial_budget is 600, the protocol's "
        "is 2300",
        "sp_random seed 103: invalid; code 'commit b2f6b4b7bcc909ab1b4939ad4c1a8f12aac79387, 0 uncommitted file(s) in "
        "ls_al_backend', the protocol's is 7041826 unchanged",
    ]


def test_the_command_writes_summary_markdown_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    write_all(tmp_path, ENTROPY, RANDOM)
    (tmp_path / CPU.runs_dir / "sp_random" / "seed_101" / "restarts.txt").write_text("resumed from round 2\n")
    assert main([str(tmp_path)]) == 0
    assert "rounds_models: met" in capsys.readouterr().out
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["verdict"]["trained_again"]["verdict"] == "met"
    markdown = (tmp_path / "summary.md").read_text()
    assert "| the rounds' models | **met** |" in markdown and "sp_random seed 101: resumed from round 2" in markdown
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert [path.name for path in write_confirmatory_summary(empty, CPU)] == ["summary.json", "summary.md"]
    assert main([str(tmp_path / "absent")]) == 2
