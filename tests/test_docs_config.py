"""`python -m ls_al_backend.docs_config`: the configuration reference page is generated from the settings, and the
committed page is what the command writes."""

from __future__ import annotations

import subprocess
import sys

from ls_al_backend.config import Settings
from ls_al_backend.docs_config import COMMAND, configuration_page, markdown_cell
from tests.conftest import REPO_ROOT

PAGE = REPO_ROOT / "docs" / "configuration.md"


def test_the_committed_page_is_what_the_command_writes():
    written = subprocess.run(
        [sys.executable, "-m", "ls_al_backend.docs_config"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout

    assert written == configuration_page()
    assert PAGE.read_text() == written, f"regenerate it: {COMMAND}"


def test_the_page_documents_every_setting_with_its_default():
    page = configuration_page()

    for name, default, _ in Settings.documentation():
        shown = "(empty)" if default == "" else f"`{default}`"
        assert f"| `{name}` | {shown} |" in page, name


def test_a_cell_cannot_break_the_table_or_hide_text_as_a_tag():
    assert markdown_cell("a | b <N>\nc") == "a \\| b &lt;N&gt; c"
