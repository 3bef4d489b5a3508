"""The files of an analysis: `timeline.json`, `.csv`, `.srt` (`timeline.py`) and `.png` (`plot.py`).

The output folder is checked before any work (`check_output_folder`): a folder that cannot be written must
not cost a whole analysis first. `write_outputs` renders every file in memory, then writes each atomically,
so a failure anywhere leaves the folder as it was.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from meldctl.analysis.plot import plot_timeline
from meldctl.analysis.timeline import Timeline, to_csv, to_json, to_srt
from meldctl.errors import AnalysisError

OUTPUT_FILES = ("timeline.json", "timeline.csv", "timeline.srt", "timeline.png")
_HINT = "pass --out FOLDER: a folder (new or existing) that you can write to"


def check_output_folder(folder: Path) -> None:
    """Refuse an output folder that the outputs could not be written into, before any work is done.

    The folder may not exist yet: then its nearest existing parent must be a folder that accepts a new file.
    Nothing is left behind: the probe file is removed at once.

    Raises:
        AnalysisError: the path (or a parent) is a file or a device, a file name of the outputs is taken by a
            folder, or the folder does not accept files (read-only, /proc, no permission).
    """
    folder = Path(folder)
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "a file" if existing.is_file() else "not a folder" if existing.exists() else "a broken link"
        where = "" if existing == folder else f" ({existing} is {what})"
        raise AnalysisError(f"cannot write the outputs to {folder}: it is not a folder{where}", hint=_HINT)
    for name in OUTPUT_FILES:
        if (folder / name).is_dir():
            raise AnalysisError(f"cannot write {folder / name}: a folder of that name is in the way", hint=_HINT)
    try:
        fd, probe = tempfile.mkstemp(prefix=".meldctl-probe.", dir=existing)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise AnalysisError(f"cannot write the outputs to {folder}: {existing} does not accept files ({reason})",
                            hint=_HINT) from None  # fmt: skip
    os.close(fd)
    os.unlink(probe)


def render_outputs(timeline: Timeline, *, by_speaker: bool = False) -> dict[str, bytes]:
    """Every output file's bytes, by name (nothing is written).

    Args:
        timeline: The analysis.
        by_speaker: Split the picture into one panel per speaker.
    """
    return {
        "timeline.json": (json.dumps(to_json(timeline), indent=2) + "\n").encode(),
        "timeline.csv": to_csv(timeline).encode(),
        "timeline.srt": to_srt(timeline).encode(),
        "timeline.png": plot_timeline(timeline, by_speaker=by_speaker),
    }


def write_outputs(timeline: Timeline, out_dir: Path, *, by_speaker: bool = False) -> dict[str, Path]:
    """Render every output, then write each into `out_dir` atomically; the paths by name.

    timeline.json goes last: where it exists, the other three do too (a folder analysis skips such videos).

    Raises:
        AnalysisError: a file cannot be written (the folder changed since `check_output_folder`).
    """
    import errno

    from meldctl.io import write_bytes_atomic

    rendered = render_outputs(timeline, by_speaker=by_speaker)
    paths = {name: Path(out_dir) / name for name in rendered}
    for name in sorted(rendered, key=lambda name: name == "timeline.json"):
        try:
            write_bytes_atomic(paths[name], rendered[name])
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise  # the CLI's "no space left" line, with its hint
            raise AnalysisError(f"cannot write {paths[name]}: {exc.strerror or exc}", hint=_HINT) from None
    return paths
