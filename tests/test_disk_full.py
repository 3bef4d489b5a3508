"""A real full disk: each command runs on a small tmpfs (mounted in a user and mount namespace, so no root is
needed), fails with one line naming the folder and the space needed, and completes once there is room."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import copy_prepared

from meldctl.data.manifest import read_manifest


def _on_small_disk(mount: Path, size_kb: int, steps: list[str], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Run shell `steps` one after another with a `size_kb` tmpfs at `mount`; `GROW` between steps enlarges it.

    Each step's output and exit code are kept in files outside the tmpfs, and what the tmpfs holds at the end is
    copied to `cwd/after`, so the test reads them once the namespace (and its tmpfs) is gone.
    """
    mount.mkdir(parents=True, exist_ok=True)
    logs = cwd / "logs"
    logs.mkdir(exist_ok=True)
    script = [f"mount -t tmpfs -o size={size_kb}k tmpfs {shlex.quote(str(mount))} || exit 99"]
    for i, step in enumerate(steps):
        if step == "GROW":
            script.append(f"mount -o remount,size={size_kb * 50}k {shlex.quote(str(mount))}")
            continue
        out = logs / f"{i}"
        script.append(f"( {step} ) >{out}.out 2>{out}.err; echo $? >{out}.code")
    script.append(f"cp -a {shlex.quote(str(mount))}/. {shlex.quote(str(cwd / 'after'))}/")
    (cwd / "after").mkdir(exist_ok=True)
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "\n".join(script)], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    results = []
    for i, step in enumerate(steps):
        if step != "GROW":
            out = logs / f"{i}"
            code = int((out.with_suffix(".code")).read_text())
            results.append(subprocess.CompletedProcess(step, code, out.with_suffix(".out").read_text(),
                                                       out.with_suffix(".err").read_text()))  # fmt: skip
    return results


def _meldctl(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in (sys.executable, "-m", "meldctl", *args))


def _one_line_error(result: subprocess.CompletedProcess, folder: Path) -> None:
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "not enough disk space" in errors[0] or "no room" in errors[0], errors[0]
    assert str(folder) in errors[0] and ("MB" in errors[0] or "GB" in errors[0])
    assert "Traceback" not in result.stderr


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to mount a small tmpfs")
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    monkeypatch.setenv("COLUMNS", "300")
    for key, value in {"NUM_FRAMES": "2", "RESIZE_SIZE": "36,48", "CROP_SIZE": "32", "AUDIO_SECONDS": "1"}.items():
        monkeypatch.setenv(f"MELDCTL_MODEL__{key}", value)


def test_prepare_on_a_full_disk_then_again_with_room(sample_data: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    data = disk / "data"
    prepare = _meldctl("prepare", "--source", "sample", "--data-dir", str(data), "--json")
    full, again = _on_small_disk(disk, 2048, [prepare, "GROW", prepare], tmp_path)
    _one_line_error(full, data / "audio")
    assert again.returncode == 0, again.stderr
    data = tmp_path / "after" / "data"
    for split in ("train", "dev", "test"):  # the same manifest as on a roomy disk: no clip marked broken
        statuses = [(r.key, r.status) for r in read_manifest(data, split)]
        assert statuses == [(r.key, r.status) for r in read_manifest(sample_data, split)]
    clips = list((data / "clips").rglob("*.mp4"))
    assert clips and all(c.stat().st_size > 0 for c in clips)
    assert not list(data.rglob(".*.tmp"))


def test_cache_build_and_checkpoint_on_a_full_disk(sample_data: Path, tiny_bert: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    staged = copy_prepared(sample_data, tmp_path / "staged")
    used_kb = sum(p.stat().st_size for p in staged.rglob("*") if p.is_file()) // 1024
    data, run = disk / "data", disk / "run"
    train = _meldctl(
        "train", "--data-dir", str(data), "--run-dir", str(run), "--text-model", str(tiny_bert),
        "--video-weights", "none", "--workers", "0", "--batch-size", "8", "--epochs", "1", "--modalities", "text,audio",
    )  # fmt: skip
    copy = f"cp -r {shlex.quote(str(staged))} {shlex.quote(str(data))}"
    # Room for the data and about 150 kB more: the audio feature cache (about 0.9 MB) does not fit.
    full, again = _on_small_disk(
        disk, used_kb + 150 + len(list(staged.rglob("*"))) * 4, [f"{copy} && {train}", "GROW", train], tmp_path
    )
    _one_line_error(full, data / "cache")
    assert "feature cache" in full.stderr and not run.exists()
    assert again.returncode == 0, again.stderr


def test_checkpoint_write_on_a_full_disk(sample_data: Path, tiny_bert: Path, tmp_path: Path) -> None:
    data = copy_prepared(sample_data, tmp_path / "data")
    disk = tmp_path / "disk"
    run = disk / "run"
    train = _meldctl(
        "train", "--data-dir", str(data), "--run-dir", str(run), "--text-model", str(tiny_bert),
        "--video-weights", "none", "--workers", "0", "--batch-size", "8", "--epochs", "1", "--modalities", "text",
    )  # fmt: skip
    full, again = _on_small_disk(disk, 64, [train, "GROW", train], tmp_path)
    _one_line_error(full, run)
    assert "best.pt" in full.stderr or "last.pt" in full.stderr
    assert again.returncode == 0, again.stderr
    best = tmp_path / "after" / "run" / "best.pt"
    assert best.is_file() and os.path.getsize(best) > 64 * 1024
