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


class DiskFullError(DataError):
    """A folder has no room for what a command must write; nothing half-written is left, a rerun continues."""


class MediaError(MeldError):
    """A clip or audio file cannot be read."""


class NoStreamError(MediaError):
    """A clip lacks the audio or video stream asked for (a silent video, an audio file): a missing modality."""


class RemoteError(MeldError):
    """An AWS call failed or cannot be made."""


class Interrupted(MeldError):
    """A stop was requested (Ctrl-C, SIGTERM) during long work; what was finished is kept.

    Args:
        message: What was stopped.
        signal: The signal's name (SIGINT, SIGTERM), which decides the exit code (130, 143).
    """

    def __init__(self, message: str, signal: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or "run the same command again: it continues where it stopped")
        self.signal = signal

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return 130 if self.signal == "SIGINT" else 143


class AnalysisError(MeldError):
    """A whole video cannot be cut into utterances: no audio and no subtitles, subtitles that match nothing."""


class SubtitleError(AnalysisError):
    """A subtitle file cannot be read or parsed."""
