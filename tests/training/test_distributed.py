"""Several processes through the real torchrun launcher, on the CPU (gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from helpers import copy_prepared

from meldctl.data.manifest import read_manifest, write_manifest
from meldctl.model.checkpoint import load_checkpoint


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train_args(data: Path, run: Path, tiny_bert: Path) -> list[str]:
    return [
        "-m", "meldctl", "train", "--data-dir", str(data), "--run-dir", str(run), "--text-model", str(tiny_bert),
        "--video-weights", "none", "--workers", "0", "--batch-size", "4", "--epochs", "2",
        "--modalities", "text,audio,video", "--device", "cpu", "--json",
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "MELDCTL_MODEL__NUM_FRAMES": "2",
        "MELDCTL_MODEL__RESIZE_SIZE": "36,48",
        "MELDCTL_MODEL__CROP_SIZE": "32",
        "MELDCTL_MODEL__AUDIO_SECONDS": "1",
        "OMP_NUM_THREADS": "1",
    }


def test_two_nodes_with_their_own_disks_and_an_odd_split(sample_data: Path, tiny_bert: Path, tmp_path: Path) -> None:
    """Two "nodes" (torchrun --nnodes 2), each with its own data folder and no cache, train to the end.

    41 training utterances on 2 ranks with batch 4: 21 per rank, whose last batch of one BatchNorm cannot train
    on. Each node builds its own feature cache (neither finds the other's on its disk).
    """
    port = _free_port()
    nodes = []
    for rank in (0, 1):
        data = copy_prepared(sample_data, tmp_path / f"node{rank}" / "data")
        write_manifest(data, "train", read_manifest(data, "train")[:41])
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
            "--node_rank", str(rank), "--master_addr", "127.0.0.1", "--master_port", str(port),
            *_train_args(data, tmp_path / f"node{rank}" / "run", tiny_bert)[0:],
        ]  # fmt: skip
        nodes.append(
            subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path
            )
        )
    outputs = [node.communicate(timeout=500) for node in nodes]
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err[-3000:]
    summary = json.loads(outputs[0][0])  # rank 0 reports
    assert summary["epochs_run"] == 2 and summary["stopped"] == "completed"
    assert outputs[1][0].strip() == ""  # rank 1 stays quiet
    for rank in (0, 1):
        caches = {p.name.split("-")[0] for p in (tmp_path / f"node{rank}" / "data" / "cache").iterdir()}
        assert caches == {"text_features", "video_features", "audio"}, rank
    assert load_checkpoint(tmp_path / "node0" / "run" / "best.pt").model.config.modalities == ("text", "audio", "video")
    assert not (tmp_path / "node1" / "run" / "best.pt").exists()  # only global rank 0 writes checkpoints
