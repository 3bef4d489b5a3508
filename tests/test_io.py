from __future__ import annotations

from pathlib import Path


def test_atomic_writes_get_the_usual_file_mode(tmp_path: Path) -> None:
    import os

    from meldctl.io import write_text_atomic

    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
