"""The one exception family below the CLI.

Code under `meldctl/` raises a `MeldError` (or a subclass) for anything a user can fix; the CLI turns it
into one red line plus an optional hint and a non-zero exit code, with the traceback only under `--debug`.
"""

from __future__ import annotations


class MeldError(Exception):
    """A problem the user can act on.

    Args:
        message: What went wrong, naming the file or value involved.
        hint: What to do about it, shown on a second line.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(MeldError):
    """A setting has a wrong value, an unknown key, or its file cannot be parsed."""

    exit_code = 2


class CheckpointError(MeldError):
    """A file is not a loadable meldctl checkpoint."""


class DataError(MeldError):
    """The dataset, a manifest or a label file is missing or malformed."""


class MediaError(MeldError):
    """A clip or audio file cannot be read."""


class RemoteError(MeldError):
    """An AWS call failed or cannot be made."""


class AnalysisError(MeldError):
    """A whole video cannot be cut into utterances: no audio and no subtitles, subtitles that match nothing."""


class SubtitleError(AnalysisError):
    """A subtitle file cannot be read or parsed."""
