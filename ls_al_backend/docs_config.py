"""The configuration reference page of the documentation site, written from the settings' own declarations.

    .venv/bin/python -m ls_al_backend.docs_config > docs/configuration.md

``tests/test_docs_config.py`` fails when the committed page differs from what this writes, so a setting added,
removed or re-documented in :mod:`ls_al_backend.config` must be followed by that command.
"""

from __future__ import annotations

import sys

from ls_al_backend.config import Settings

COMMAND = ".venv/bin/python -m ls_al_backend.docs_config > docs/configuration.md"


def markdown_cell(text: str) -> str:
    """``text`` safe inside a markdown table cell: pipes escaped, ``<`` and ``>`` as entities (``v<N>`` is not a
    tag), newlines as spaces."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def configuration_page() -> str:
    """The whole of ``docs/configuration.md``: every setting with its default and help text, in declaration order."""
    lines = [
        "# Configuration reference",
        "",
        "Every setting is an environment variable (field `foo_bar` of `Settings` in `ls_al_backend/config.py` is",
        "read from `FOO_BAR`); `ls-al-backend serve --help` lists the same. A value the backend cannot use stops it",
        "at start with the setting's name and the reason.",
        "",
        f"This page is generated; after changing a setting, regenerate it with `{COMMAND}`",
        "(`tests/test_docs_config.py` fails until the committed page is what that command writes).",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for name, default, help_text in Settings.documentation():
        shown = "(empty)" if default == "" else "`" + default.replace("|", "\\|") + "`"
        lines.append(f"| `{name}` | {shown} | {markdown_cell(help_text)} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    sys.stdout.write(configuration_page())
    return 0


if __name__ == "__main__":
    sys.exit(main())
