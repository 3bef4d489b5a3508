"""Regenerate the settings table at the end of docs/configuration.md from meldctl/settings.py."""

from pathlib import Path

from meldctl.settings import settings_markdown

MARKER = "<!-- settings table: generated -->\n"

path = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
head = path.read_text(encoding="utf-8").split(MARKER)[0]
path.write_text(head + MARKER + settings_markdown(), encoding="utf-8")
print(f"wrote {path}")
