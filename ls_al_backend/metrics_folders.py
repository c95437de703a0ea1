"""The folders of prometheus-client's multiprocess mode (see ``metrics.py``), prepared before anything imports
prometheus-client: it reads ``PROMETHEUS_MULTIPROC_DIR`` once, when imported. This module must not import it."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
WORKER_PREFIX = "ls-al-worker-metrics-"


def use_private_folder() -> Path:
    """A worker's folder: fresh, named after its process (``ls-al-worker-metrics-<pid>-...`` in the temporary
    folder), removed at exit. The folders of workers that died without exiting (SIGKILL) are removed first."""
    for stale in Path(tempfile.gettempdir()).glob(f"{WORKER_PREFIX}*"):
        owner = stale.name.removeprefix(WORKER_PREFIX).split("-")[0]
        if owner.isdigit() and not _running(int(owner)):
            shutil.rmtree(stale, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{WORKER_PREFIX}{os.getpid()}-"))
    os.environ[VARIABLE] = str(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def empty_folder(folder: Path) -> None:
    """``serve`` with ``PROMETHEUS_MULTIPROC_DIR``: create the folder and delete the files an earlier run left
    (prometheus-client adds up every file in it)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
