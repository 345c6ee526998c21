"""The README's settings table is the user's reference: it must name every setting there is."""

from __future__ import annotations

from pathlib import Path

from aegis_pipeline.settings import Settings

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_readme_table() -> None:
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in README]
    assert missing == []


def test_readme_starts_with_the_two_commands() -> None:
    head = README[:400]
    assert "make demo" in head
    assert "make test" in head
