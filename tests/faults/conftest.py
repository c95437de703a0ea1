"""The fault suite's ledger: every case records what the user saw, and the totals are printed at the end."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FaultLedger:
    """One row per hostile input or fault tried: its name, the HTTP status (or job status) the user saw, and
    how many labels were lost."""

    rows: list[tuple[str, str, int]] = field(default_factory=list)

    def record(self, case: str, seen: str, labels_lost: int = 0) -> None:
        self.rows.append((case, seen, labels_lost))

    def server_errors(self) -> int:
        return sum(seen.startswith("5") for _, seen, _ in self.rows)

    def labels_lost(self) -> int:
        return sum(lost for _, _, lost in self.rows)


LEDGER = FaultLedger()


def pytest_terminal_summary(terminalreporter) -> None:
    if not LEDGER.rows:
        return
    terminalreporter.section("fault suite")
    for case, seen, lost in LEDGER.rows:
        terminalreporter.write_line(f"  {case:<58} {seen:<44} labels lost: {lost}")
    terminalreporter.write_line(
        f"fault suite: {len(LEDGER.rows)} cases tried, {LEDGER.server_errors()} answered 5xx, "
        f"{LEDGER.labels_lost()} labels lost"
    )
