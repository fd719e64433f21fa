"""docs/cli.md is what the CLI says about itself (regenerate: python -m tests.cli_reference > docs/cli.md)."""

from __future__ import annotations

from pathlib import Path

from tests.cli_reference import REGENERATE, render

CHECKED_IN = Path(__file__).parents[2] / "docs" / "cli.md"


def test_cli_reference_is_current() -> None:
    assert CHECKED_IN.exists(), f"docs/cli.md is missing: run `{REGENERATE}`"
    assert CHECKED_IN.read_text() == render(), (
        f"the CLI's help changed: run `{REGENERATE}` and commit docs/cli.md"
    )


def test_cli_reference_has_a_section_per_command() -> None:
    text = render()
    for title in ("## orchestrator run", "## orchestrator local up", "## orchestrator config set"):
        assert f"\n{title}\n" in text
