"""MkDocs hook: the benchmark READMEs and their plots become pages of the documentation site.

The benchmark narratives live beside their results under ``benchmarks/`` (not under ``docs/``); this adds every
``benchmarks/**/README.md`` and every ``.png`` beside them to the site at the same path as in the repository, so
a page under ``docs/`` links them as ``benchmarks/active_learning/README.md`` and ``mkdocs build --strict`` checks
those links, and the links inside them, too.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

REPO_ROOT = Path(__file__).resolve().parents[1]


def benchmark_files(root: Path = REPO_ROOT) -> list[Path]:
    """``benchmarks/**/README.md`` and ``benchmarks/**/*.png`` under ``root``, relative to it, sorted."""
    found = [*root.glob("benchmarks/**/README.md"), *root.glob("benchmarks/**/*.png")]
    return sorted(path.relative_to(root) for path in found if "state" not in path.parts)


def on_files(files: Files, config) -> Files:
    for relative in benchmark_files():
        files.append(File(str(relative), str(REPO_ROOT), config["site_dir"], config["use_directory_urls"]))
    return files
