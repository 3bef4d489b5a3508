"""`prepare --source labels`: MELD's three label CSVs over HTTP, each checked against its published SHA-256.

The server is a real local HTTP server (127.0.0.1) serving the real CSVs from `../shared/data/meld` (the
repository's sibling folder, byte-identical to the pinned commit of declare-lab/MELD).
"""

from __future__ import annotations

import functools
import json
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from meldctl.cli import app
from meldctl.data.download import sha256_of
from meldctl.data.manifest import read_manifest
from meldctl.data.meld import CSV_NAMES, LABEL_SHA256
from meldctl.errors import DataError
from meldctl.prepare import prepare
from meldctl.settings import MELD_LABELS_URL, DataSettings

MELD_CSVS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "meld"
ROWS = {"train": 9989, "dev": 1109, "test": 2610}
runner = CliRunner()


@pytest.fixture(scope="module")
def real_csvs() -> Path:
    assert all((MELD_CSVS / name).is_file() for name in CSV_NAMES.values()), (
        f"the real MELD label CSVs belong in {MELD_CSVS} (shared/ beside the repository)"
    )
    return MELD_CSVS


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[Path], str]]:
    """Start a static HTTP server on 127.0.0.1 for a folder; returns its base URL (ending in /)."""
    servers: list[ThreadingHTTPServer] = []

    def start(folder: Path) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_default_points_at_the_pinned_commit() -> None:
    assert MELD_LABELS_URL == (
        "https://raw.githubusercontent.com/declare-lab/MELD/2d2011b409d3ca2d7e94460cd007d434b1d0a102/data/MELD/"
    )
    assert DataSettings().labels_url == MELD_LABELS_URL


def test_the_served_csvs_are_the_published_ones(real_csvs: Path) -> None:
    assert {split: sha256_of(real_csvs / name) for split, name in CSV_NAMES.items()} == LABEL_SHA256


def test_labels_give_text_only_manifests(real_csvs: Path, serve, tmp_path: Path) -> None:  # noqa: ANN001
    data_dir = tmp_path / "data"
    args = ["prepare", "--source", "labels", "--data-dir", str(data_dir), "--json"]
    result = runner.invoke(app, args, env={"MELDCTL_DATA__LABELS_URL": serve(real_csvs).rstrip("/")})
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for split, count in ROWS.items():
        assert report[split]["missing"] == count and report[split]["text_only"] is True
        rows = read_manifest(data_dir, split)
        assert len(rows) == count and all(r.clip is None and r.audio is None and r.status == "missing" for r in rows)
        assert all(r.text and r.emotion and r.sentiment and r.speaker for r in rows)
        downloaded = data_dir / "raw" / "labels" / CSV_NAMES[split]
        assert downloaded.read_bytes() == (real_csvs / CSV_NAMES[split]).read_bytes()
    first = read_manifest(data_dir, "train")[0]
    assert (first.speaker, first.text[:40]) == ("Chandler", "also I was the point person on my compan")


def test_a_tampered_csv_is_one_line_and_not_kept(real_csvs: Path, serve, tmp_path: Path) -> None:  # noqa: ANN001
    mirror = tmp_path / "mirror"
    shutil.copytree(real_csvs, mirror)
    dev = mirror / CSV_NAMES["dev"]
    dev.write_bytes(dev.read_bytes().replace(b",joy,", b",anger,", 1))  # one label changed
    data_dir = tmp_path / "data"
    args = ["prepare", "--source", "labels", "--data-dir", str(data_dir), "--splits", "dev,test"]
    result = runner.invoke(app, args, env={"MELDCTL_DATA__LABELS_URL": serve(mirror)})
    assert result.exit_code == 1
    assert "SHA-256 does not match" in result.output and "dev_sent_emo.csv" in result.output
    assert "Traceback" not in result.output and "data.labels_url" in result.output
    assert not list((data_dir / "raw" / "labels").glob("dev_sent_emo.csv*")), "nothing of the tampered file is kept"
    assert not (data_dir / "manifest").exists()


def test_offline_names_the_setting(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port with nothing listening: as good as offline, without a network
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = DataSettings(data_dir=tmp_path, source="labels", labels_url=f"http://127.0.0.1:{port}/meld/")
    with pytest.raises(DataError, match="are you offline") as caught:
        prepare(data)
    assert "data.labels_url" in caught.value.hint and "--source FOLDER" in caught.value.hint


def test_a_text_model_trains_on_the_labels(real_csvs: Path, serve, tiny_bert: Path, tmp_path: Path) -> None:  # noqa: ANN001
    data_dir, run = tmp_path / "data", tmp_path / "run"
    prepare(DataSettings(data_dir=data_dir, source="labels", labels_url=serve(real_csvs)))
    args = ["train", "--data-dir", str(data_dir), "--run-dir", str(run), "--text-model", str(tiny_bert),
            "--modalities", "text", "--epochs", "1", "--batch-size", "256", "--workers", "0", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (run / "best.pt").is_file()
    scored = ["eval", str(run / "best.pt"), "--data-dir", str(data_dir), "--split", "test", "--json"]
    evaluated = runner.invoke(app, scored)
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["n"] == ROWS["test"]
