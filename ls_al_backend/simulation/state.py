"""A simulation run's folder: its settings (``config.json``, checked when a run resumes), the results after every
round (``results.json``, ``rounds.csv``; a new round drops an earlier ``final``) and what resuming needs
(``state/``: the labelled units and the last round's model)."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import torch

from ls_al_backend.model.network import SegmentationNet, build_network
from ls_al_backend.modes import ImageLabels
from ls_al_backend.simulation.config import LEGACY_MODE_NAMES, RESUMABLE_FIELDS, SimulationConfig
from ls_al_backend.simulation.output import json_value, rows_to_csv, write_atomic


class RunFolder:
    """Reads and writes one run's folder (``config.out_dir``); every write is atomic."""

    def __init__(self, config: SimulationConfig):
        self.config = config
        self.out = Path(config.out_dir)

    def state_path(self, round_index: int) -> Path:
        return self.out / "state" / f"round_{round_index:03d}.json"

    def model_path(self, round_index: int) -> Path:
        return self.out / "state" / f"model_{round_index:03d}.pt"

    def results(self) -> dict[str, Any]:
        path = self.out / "results.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def check_config(self) -> None:
        """Write ``config.json``; ``ValueError`` naming the fields when the folder holds a run with other settings
        (fields in ``RESUMABLE_FIELDS``, such as the number of rounds, may change)."""
        (self.out / "state").mkdir(parents=True, exist_ok=True)
        path = self.out / "config.json"
        mine = {k: v for k, v in self.config.to_dict().items() if k not in RESUMABLE_FIELDS}
        if path.is_file():
            # a field added after the run was started reads as its default
            defaults = {
                spec.name: spec.default
                for spec in dataclasses.fields(SimulationConfig)
                if spec.default is not dataclasses.MISSING
            }
            saved = {**defaults, **json.loads(path.read_text())}
            saved["query_mode"] = LEGACY_MODE_NAMES.get(saved["query_mode"], saved["query_mode"])
            saved = {k: v for k, v in saved.items() if k not in RESUMABLE_FIELDS}
            if saved != mine:
                changed = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
                raise ValueError(
                    f"{self.out} holds a run with other settings ({', '.join(changed)}); use a new out dir"
                )
        write_atomic(path, json.dumps(self.config.to_dict(), indent=2).encode())

    def save_round(
        self, round_index: int, net: SegmentationNet, revealed: list[ImageLabels], rows: list[dict[str, Any]]
    ) -> None:
        """The round's labelled units and model, then the results through this round."""
        state = [dataclasses.asdict(labels) for labels in revealed]
        write_atomic(self.state_path(round_index), json.dumps({"round": round_index, "images": state}).encode())
        buffer = io.BytesIO()
        torch.save(net.state_dict(), buffer)
        write_atomic(self.model_path(round_index), buffer.getvalue())
        payload = {"kind": "active_learning", "strategy": self.config.strategy, "seed": self.config.seed}
        payload |= {"config": self.config.to_dict(), "rows": rows}
        write_atomic(self.out / "results.json", json.dumps(json_value(payload), indent=2).encode())
        write_atomic(self.out / "rounds.csv", rows_to_csv(rows, self.config.class_names).encode())
        if not self.config.keep_all_checkpoints:  # resuming needs only the last round's model
            for older in range(round_index):
                self.model_path(older).unlink(missing_ok=True)

    def save_final(self, final: dict[str, Any]) -> None:
        """``final`` (the final labels' training and score) into ``results.json``, beside the rows."""
        payload = self.results() | {"final": final}
        write_atomic(self.out / "results.json", json.dumps(json_value(payload), indent=2).encode())

    def restore(
        self, device: torch.device
    ) -> tuple[list[dict[str, Any]], list[ImageLabels] | None, SegmentationNet | None]:
        """The rows of the rounds whose state is complete, the labelled units and the model after the last of them
        (eval mode, on ``device``); ``([], None, None)`` when nothing can be resumed.

        A finished run (``config.rounds`` rows) needs only its last round's labels, not its model: the model is
        ``None`` then, and the final labels can still be trained again (``final_epochs``), e.g. a GPU run's folder
        brought back without its checkpoints."""
        rows = self.results().get("rows", [])
        while rows:
            last = rows[-1]["round"]
            finished = len(rows) >= self.config.rounds
            if self.state_path(last).is_file() and (finished or self.model_path(last).is_file()):
                break
            rows = rows[:-1]
        if not rows:
            return [], None, None
        last = rows[-1]["round"]
        state = json.loads(self.state_path(last).read_text())["images"]
        revealed = [
            ImageLabels(item["dense"], list(item["regions"]), [tuple(p) for p in item["pixels"]]) for item in state
        ]
        if not self.model_path(last).is_file():
            return rows, revealed, None
        net = build_network(self.config.network_spec(), seed=self.config.seed)
        net.load_state_dict(torch.load(self.model_path(last), map_location="cpu", weights_only=True))
        return rows, revealed, net.to(device).eval()
