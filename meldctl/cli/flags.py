"""Command options declared once, as rows: an option that overrides a setting names the section of its key.

`command(run, flags)` makes the Typer command: one `Annotated` option per row, in the rows' order, whose values
are grouped into the settings overrides (`{section: {key: value}}`, what `resolve_settings` takes) and the
command's own options, passed to `run` by name. Adding an option that overrides a setting is one row.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer

Overrides = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Flag:
    """One command-line option.

    Attributes:
        name: The parameter's name; the settings key it overrides (`--name-with-dashes` unless `decls` is given).
        type: Its type; `X | None` with the default None means "not given": the lower layers decide.
        help: The help text.
        section: The settings section of the key; None for an option of the command itself.
        decls: Typer's declarations where they are not just `--name` (`"--cache/--no-cache"`).
        default: The value when it is not given.
        panel: The help panel that lists it.
    """

    name: str
    type: Any
    help: str
    section: str | None = None
    decls: tuple[str, ...] = ()
    default: Any = None
    panel: str | None = None

    def parameter(self) -> inspect.Parameter:
        option = typer.Option(*self.decls, help=self.help, rich_help_panel=self.panel)
        return inspect.Parameter(
            self.name, inspect.Parameter.KEYWORD_ONLY, default=self.default, annotation=Annotated[self.type, option]
        )


def command(run: Callable[..., None], flags: Sequence[Flag]) -> Callable[..., None]:
    """A Typer command with one option per flag that calls `run(overrides, **own_options)`.

    Args:
        run: Takes the settings overrides first, then the options without a section as keywords; its docstring
            is the command's help.
        flags: The options, in the order that `--help` lists them.
    """

    def invoke(**values: Any) -> None:
        overrides: Overrides = {}
        own: dict[str, Any] = {}
        for flag in flags:
            if flag.section is None:
                own[flag.name] = values[flag.name]
            else:
                overrides.setdefault(flag.section, {})[flag.name] = values[flag.name]
        run(overrides, **own)

    invoke.__signature__ = inspect.Signature([flag.parameter() for flag in flags])  # type: ignore[attr-defined]
    invoke.__name__, invoke.__doc__ = run.__name__.lstrip("_"), run.__doc__
    return invoke
