from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from meld_fixtures import csv_text

from meldctl.data.extract import extract_meld
from meldctl.data.meld import find_layout
from meldctl.errors import DataError


def _tar_gz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def make_archive(folder: Path) -> Path:
    """A MELD.Raw.tar.gz shaped like the official one: CSVs plus nested train/dev/test archives."""
    csv = csv_text([(0, 0, "Hi.", "joy", "positive")]).encode()
    nested = {
        "train": ("train_splits", _tar_gz(folder / "train.tar.gz", {"train_splits/dia0_utt0.mp4": b"v"})),
        "dev": ("dev_splits_complete", _tar_gz(folder / "dev.tar.gz", {"dev_splits_complete/dia0_utt0.mp4": b"v"})),
        "test": ("output_repeated_splits_test", _tar_gz(folder / "test.tar.gz", {"x/dia0_utt0.mp4": b"v"})),
    }
    files = {f"MELD.Raw/{split}_sent_emo.csv": csv for split in nested}
    files |= {f"MELD.Raw/{split}.tar.gz": path.read_bytes() for split, (_, path) in nested.items()}
    return _tar_gz(folder / "MELD.Raw.tar.gz", files)


def test_nested_archives_are_extracted(tmp_path: Path) -> None:
    dest = extract_meld(make_archive(tmp_path), tmp_path / "data" / "raw" / "out")
    assert (dest / "MELD.Raw" / "train_splits" / "dia0_utt0.mp4").read_bytes() == b"v"
    assert not list(dest.rglob("*.tar.gz"))
    layout = find_layout(dest, ["train", "dev"])
    assert layout.clip_dirs["dev"] == dest / "MELD.Raw" / "dev_splits_complete"
    assert extract_meld(tmp_path / "MELD.Raw.tar.gz", dest) == dest  # a rerun keeps the finished tree


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/meldctl-escape.txt", "a/../../escape.txt"])
def test_path_traversal_is_refused(tmp_path: Path, name: str) -> None:
    archive = _tar_gz(tmp_path / "evil.tar.gz", {"ok.txt": b"x", name: b"pwned"})
    with pytest.raises(DataError, match="outside the data folder"):
        extract_meld(archive, tmp_path / "data" / "out")
    assert not (tmp_path / "data" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "data" / "out").exists()


def test_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo("clips/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
        tar.addfile(link)
    with pytest.raises(DataError, match="points outside"):
        extract_meld(archive, tmp_path / "out")


def test_truncated_archive_is_a_clear_error(tmp_path: Path) -> None:
    archive = make_archive(tmp_path)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as info:
        extract_meld(archive, tmp_path / "data" / "out")
    assert "download it again" in (info.value.hint or "")
    assert list((tmp_path / "data").iterdir()) == []  # no partial tree left behind
