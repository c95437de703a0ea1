"""Pool-based active-learning simulation with an annotator simulated from ground-truth masks.

One file per part:

* :mod:`.config`: :class:`SimulationConfig`, the ``cpu`` / ``gpu`` presets, reproducible seeds;
* :mod:`.data`: the pool and evaluation images with their masks;
* :mod:`.annotator`: what a simulated annotator answers to each kind of query and what it costs in clicks;
* :mod:`.loop`: the rounds (score, select, reveal, train, evaluate) and resuming;
* :mod:`.reference`: the fully supervised reference;
* :mod:`.metrics`: mIoU on the evaluation split;
* :mod:`.report`: summary tables, ``summary.json`` and learning curves over strategies and seeds;
* :mod:`.output`: log lines, progress bars, atomic files.
"""

from ls_al_backend.simulation.annotator import (
    POLYGON_MIN_REGION,
    POLYGON_TOLERANCE,
    ImageLabels,
    build_target,
    dominant_class,
    multiclass_candidate_matrix,
    multiclass_candidates,
    trace_polygons,
)
from ls_al_backend.simulation.config import (
    BUDGET_UNITS,
    CAMVID_CLASSES,
    PRESETS,
    QUERY_MODES,
    SimulationConfig,
    config_from_preset,
    derive_seed,
)
from ls_al_backend.simulation.data import Example, load_split
from ls_al_backend.simulation.loop import Simulation, run_simulation
from ls_al_backend.simulation.metrics import confusion_matrix, evaluate, iou_per_class, mean_iou
from ls_al_backend.simulation.output import rows_to_csv
from ls_al_backend.simulation.reference import fully_supervised_reference
from ls_al_backend.simulation.report import ResultSet, plot_learning_curves, summarise, summary_table, write_summary

__all__ = [
    "BUDGET_UNITS",
    "CAMVID_CLASSES",
    "POLYGON_MIN_REGION",
    "POLYGON_TOLERANCE",
    "PRESETS",
    "QUERY_MODES",
    "Example",
    "ImageLabels",
    "ResultSet",
    "Simulation",
    "SimulationConfig",
    "build_target",
    "config_from_preset",
    "confusion_matrix",
    "derive_seed",
    "dominant_class",
    "evaluate",
    "fully_supervised_reference",
    "iou_per_class",
    "load_split",
    "mean_iou",
    "multiclass_candidate_matrix",
    "multiclass_candidates",
    "plot_learning_curves",
    "rows_to_csv",
    "run_simulation",
    "summarise",
    "summary_table",
    "trace_polygons",
    "write_summary",
]
