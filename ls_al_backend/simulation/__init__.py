"""Pool-based active-learning simulation with an annotator simulated from ground-truth masks.

One file per part:

* :mod:`.config`: :class:`SimulationConfig`, the ``cpu`` / ``gpu`` presets, reproducible seeds;
* :mod:`.data`: the pool and evaluation images with their masks;
* :mod:`.annotator`: the simulated annotator of the run's query mode (each mode's answers and costs are its
  handler's, :mod:`ls_al_backend.modes`);
* :mod:`.loop`: the rounds (score, select, reveal, train, evaluate) and resuming;
* :mod:`.selection`: one round's candidate units and which of them fit its budget;
* :mod:`.reference`: the fully supervised reference; :mod:`.reference_ladder`: it trained to convergence (rungs that
  double the epochs);
* :mod:`.stats`: two arms compared over seeds (Welch's t, the seed-weighted pooled std);
* :mod:`.confirmatory`, :mod:`.confirmatory_report`: the pre-registered comparison of
  ``benchmarks/active_learning/confirmatory/PROTOCOL.md`` judged from its runs;
* :mod:`.metrics`: mIoU on the evaluation split;
* :mod:`.results`: finished runs read back, means and stds over seeds, curves at equal actions or mIoU;
* :mod:`.goal`: the label-savings goal judged on a summary (the pooled-std rule);
* :mod:`.summary`, :mod:`.tables`, :mod:`.plots`: ``summary.json``, ``summary.md`` and the learning curves;
* :mod:`.report`: all three written into one folder;
* :mod:`.output`: log lines, progress bars, atomic files.
"""

from ls_al_backend.simulation.annotator import build_target
from ls_al_backend.simulation.config import (
    BUDGET_UNITS,
    CAMVID_CLASSES,
    LEGACY_MODE_NAMES,
    PRESETS,
    SimulationConfig,
    config_from_preset,
    derive_seed,
)
from ls_al_backend.simulation.data import Example, load_masks, load_split
from ls_al_backend.simulation.loop import Simulation, run_simulation
from ls_al_backend.simulation.metrics import confusion_matrix, evaluate, iou_per_class, mean_iou
from ls_al_backend.simulation.output import rows_to_csv
from ls_al_backend.simulation.plots import plot_learning_curves
from ls_al_backend.simulation.reference import fully_supervised_reference
from ls_al_backend.simulation.report import write_summary
from ls_al_backend.simulation.results import ResultSet
from ls_al_backend.simulation.summary import summarise
from ls_al_backend.simulation.tables import summary_table

__all__ = [
    "BUDGET_UNITS",
    "CAMVID_CLASSES",
    "PRESETS",
    "LEGACY_MODE_NAMES",
    "Example",
    "ResultSet",
    "Simulation",
    "SimulationConfig",
    "build_target",
    "config_from_preset",
    "confusion_matrix",
    "derive_seed",
    "evaluate",
    "fully_supervised_reference",
    "iou_per_class",
    "load_masks",
    "load_split",
    "mean_iou",
    "plot_learning_curves",
    "rows_to_csv",
    "run_simulation",
    "summarise",
    "summary_table",
    "write_summary",
]
