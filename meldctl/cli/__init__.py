"""The `meldctl` Typer app: root options, error handling, and one module per command."""

from __future__ import annotations

import errno
import signal
from pathlib import Path
from typing import Annotated, NoReturn

import click
import typer
from rich.markup import escape
from typer.core import TyperGroup

from meldctl import __version__
from meldctl.cli import analyze as analyze_cmd
from meldctl.cli import cache as cache_cmd
from meldctl.cli import config as config_cmd
from meldctl.cli import doctor as doctor_cmd
from meldctl.cli import endpoint as endpoint_cmd
from meldctl.cli import eval as eval_cmd
from meldctl.cli import logs as logs_cmd
from meldctl.cli import predict as predict_cmd
from meldctl.cli import prepare as prepare_cmd
from meldctl.cli import serve as serve_cmd
from meldctl.cli import train as train_cmd
from meldctl.cli import weights as weights_cmd
from meldctl.cli.common import console, root
from meldctl.errors import Interrupted, MeldError


class Terminated(BaseException):  # noqa: N818  (like KeyboardInterrupt: a request, not an error)
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so that every command stops cleanly.

    Long commands (train, eval) replace this with a polite stop request while they run (`GracefulStop`).
    """


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


class _MeldGroup(TyperGroup):
    """Turns a `MeldError` into one red line (plus a hint) and its exit code; `--debug` shows the traceback.

    A stop (`Interrupted`, Ctrl-C's KeyboardInterrupt, SIGTERM's `Terminated`) is one yellow line and exit code
    130 or 143 (`Interrupted.exit_code`: the one place that maps a signal to its code).
    """

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        try:
            return super().invoke(ctx)
        except Interrupted as exc:
            _stopped(exc)
        except MeldError as exc:
            if root.debug:
                raise
            console.print(f"[bold red]Error:[/] {escape(exc.message)}", soft_wrap=True)
            if exc.hint:
                console.print(f"[dim]Hint: {escape(exc.hint)}[/]", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except (KeyboardInterrupt, Terminated) as exc:
            if root.debug:
                raise
            name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
            _stopped(Interrupted("finished work is kept", name, hint="run the same command again"))
        except OSError as exc:
            if root.debug or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = f" writing {exc.filename}" if exc.filename else ""
            console.print(f"[bold red]Error:[/] no space left on the device{escape(where)}", soft_wrap=True)
            console.print("[dim]Hint: free some space and run the command again: finished work is kept[/]")
            raise typer.Exit(1) from None


def _stopped(exc: Interrupted) -> NoReturn:
    console.print(f"[yellow]Stopped by {exc.signal or 'a signal'}:[/] {escape(exc.message)}.", soft_wrap=True)
    if exc.hint:
        console.print(f"[dim]Hint: {escape(exc.hint)}[/]", soft_wrap=True)
    raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    name="meldctl",
    cls=_MeldGroup,
    help="Train, evaluate and run multimodal (text, audio, video) emotion and sentiment classifiers on MELD.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"meldctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML settings file (default: ./meldctl.toml when present)."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Settings come from flags, then MELDCTL_* environment variables, then the TOML file, then defaults."""
    root.config = config
    root.debug = debug


app.add_typer(config_cmd.app, name="config")
app.command("prepare")(prepare_cmd.prepare)
app.command("train")(train_cmd.train)
app.command("eval")(eval_cmd.evaluate)
app.command("predict")(predict_cmd.predict)
app.command("serve")(serve_cmd.serve)
app.command("analyze")(analyze_cmd.analyze)
app.add_typer(logs_cmd.app, name="logs")
app.add_typer(cache_cmd.app, name="cache")
app.add_typer(weights_cmd.app, name="weights")
app.command("doctor")(doctor_cmd.doctor)
app.add_typer(endpoint_cmd.app, name="endpoint")


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _terminate)
    app()
