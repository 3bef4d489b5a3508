"""Property tests of the settings parsers (a TOML file, MELDCTL_* variables): whatever they hold, the settings
load or one `ConfigError` (exit code 2, one line) says why; never a traceback. What loads renders back to TOML
that loads to the same settings."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from unittest import mock

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from meldctl.cli import app
from meldctl.errors import ConfigError
from meldctl.settings import ENV_PREFIX, SECTIONS, Settings, load_settings, render_toml

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
KEYS = [(section, key) for section, model in SECTIONS.items() for key in model.model_fields]
# What a TOML file or a variable can hold: every TOML scalar (inf and nan too), arrays, tables.
SCALARS = (
    st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=20) | st.dates() | st.times()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
NAMES = st.sampled_from([key for _, key in KEYS]) | st.text(max_size=12)
SECTION_NAMES = st.sampled_from(list(SECTIONS)) | st.text(max_size=8)
ENV_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)


def _loads_or_refuses(config: Path | None = None) -> Settings | None:
    try:
        return load_settings(config)
    except ConfigError as exc:
        assert exc.exit_code == 2
        assert exc.message and "\n" not in exc.message, exc.message
        return None


def _round_trips(loaded: Settings, folder: Path) -> None:
    again = folder / "rendered.toml"
    again.write_text(render_toml(loaded, commented=False), encoding="utf-8")
    reloaded = load_settings(again)
    assert _plain(reloaded) == _plain(loaded)


def _plain(value: Settings) -> dict:
    # nan is the one value unequal to itself; settings refuse it, so none should be here
    dumped = value.model_dump(mode="json")
    assert not any(isinstance(v, float) and math.isnan(v) for body in dumped.values() for v in body.values())
    return dumped


@FUZZ
@given(st.binary(max_size=600))
def test_a_toml_file_of_any_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "any.toml"
    path.write_bytes(data)
    _loads_or_refuses(path)


@FUZZ
@given(st.dictionaries(SECTION_NAMES, st.dictionaries(NAMES, VALUES, max_size=4) | VALUES, max_size=4))
def test_a_toml_file_of_any_tables(tmp_path: Path, document: dict) -> None:
    path = tmp_path / "tables.toml"
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    loaded = _loads_or_refuses(path)
    if loaded is not None:
        _round_trips(loaded, tmp_path)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(KEYS), ENV_TEXT), max_size=4))
def test_any_value_in_the_environment(tmp_path: Path, variables: list[tuple[tuple[str, str], str]]) -> None:
    env = {f"{ENV_PREFIX}{section.upper()}__{key.upper()}": value for (section, key), value in variables}
    with mock.patch.dict(os.environ, env):
        loaded = _loads_or_refuses()
    if loaded is not None:
        _round_trips(loaded, tmp_path)


# A variable's name after MELDCTL_: a section, a key, deeper paths, or nothing known; its value: any text, JSON.
NAME_PARTS = st.sampled_from([*SECTIONS, *(key for _, key in KEYS)]) | st.text(
    st.characters(whitelist_categories=("Lu", "Ll", "Nd", "Pc")), min_size=1, max_size=10
)
VARIABLE_NAMES = st.lists(NAME_PARTS, min_size=1, max_size=3).map("__".join)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAME_PARTS, inner, max_size=3),
                    max_leaves=6).map(json.dumps)  # fmt: skip


@FUZZ
@given(st.dictionaries(VARIABLE_NAMES, ENV_TEXT | JSON, max_size=4))
def test_any_meldctl_variable(names: dict[str, str]) -> None:
    with mock.patch.dict(os.environ, {ENV_PREFIX + name: value for name, value in names.items()}):
        _loads_or_refuses()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(KEYS), ENV_TEXT, st.binary(max_size=200))
def test_the_cli_says_one_line_and_exits_2(tmp_path: Path, key: tuple[str, str], value: str, toml: bytes) -> None:
    """Through `meldctl config show`: exit 0, or exit 2 with an `Error:` line (and its hint), never a traceback."""
    (tmp_path / "meldctl.toml").write_bytes(toml)
    with mock.patch.dict(os.environ, {f"{ENV_PREFIX}{key[0].upper()}__{key[1].upper()}": value}):
        result = CliRunner().invoke(app, ["config", "show", "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert lines[0].startswith("Error: ") and len(lines) <= 2 and "Traceback" not in result.output, lines
