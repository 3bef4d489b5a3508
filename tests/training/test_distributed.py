"""Several processes through the real torchrun launcher, on the CPU (gloo)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from helpers import copy_prepared, descendants

from meldctl.data.manifest import read_manifest, write_manifest
from meldctl.model.checkpoint import load_checkpoint, read_checkpoint


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


# The hang of issue 19 (defect 1) came 1 run in 5: repeat until either bound is reached. A hang shows as a run that
# outlives _HANG_S (far above a run's time on a loaded machine); MELDCTL_TEST_REPEATS asks for more repetitions.
_REPEATS = int(os.environ.get("MELDCTL_TEST_REPEATS", "6"))
_REPEAT_BUDGET_S = float(os.environ.get("MELDCTL_TEST_REPEAT_BUDGET_S", "150"))
_HANG_S = 240


def _torchrun_once(args: list[str], cwd: Path) -> tuple[int | None, str]:
    """One 2-process torchrun: its exit code (None: it hung, and it was killed with all its ranks) and output."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    log = cwd / "torchrun.log"  # a file, not a pipe: a hung rank would keep a pipe open for ever
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=cwd)
        try:
            proc.wait(timeout=_HANG_S)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            proc.wait()
            return None, log.read_text()
    return proc.returncode, log.read_text()


def _kill_tree(pid: int) -> None:
    for each in [*descendants(pid), pid]:
        try:
            os.kill(each, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_every_rank_exits_after_training_again_and_again(sample_data: Path, tiny_bert: Path, tmp_path: Path) -> None:
    """Two processes (gloo, CPU) train to the end, many times over: each time both ranks exit 0, none hangs.

    Rank 1 used to hang for ever in 1 run of 5: DDP's reducer, freed after `destroy_process_group`, destroyed the
    gloo process group while a gloo thread waited for the GIL that the destructor's thread held.
    """
    data = copy_prepared(sample_data, tmp_path / "data")
    write_manifest(data, "train", read_manifest(data, "train")[:12])
    write_manifest(data, "dev", read_manifest(data, "dev")[:4])
    started, runs = time.monotonic(), 0
    while runs < 2 or (runs < _REPEATS and time.monotonic() - started < _REPEAT_BUDGET_S):
        args = _train_args(data, tmp_path / f"run{runs}", tiny_bert)
        args[args.index("--epochs") + 1], args[args.index("--modalities") + 1] = "1", "text"
        code, out = _torchrun_once(args, tmp_path)
        assert code is not None, f"run {runs + 1} hung (killed after {_HANG_S} s):\n{out[-3000:]}"
        assert code == 0, out[-3000:]
        assert (tmp_path / f"run{runs}" / "best.pt").is_file()
        runs += 1
    print(f"{runs} two-process runs, every rank exited")  # with -s: how many repetitions this machine afforded


def test_sigterm_to_the_launcher_saves_last_and_exits_143(sample_data: Path, tiny_bert: Path, tmp_path: Path) -> None:
    """A SageMaker job's torchrun gets SIGTERM on a stop: the workers save last.pt, the job ends 143, no traceback."""
    data = copy_prepared(sample_data, tmp_path / "data")
    run = tmp_path / "run"
    args = _train_args(data, run, tiny_bert)
    args[args.index("--epochs") + 1], args[args.index("--modalities") + 1] = "10000", "text"
    command = [sys.executable, "-m", "meldctl.training.torchrun", "--standalone", "--nproc_per_node", "2", *args]
    with (tmp_path / "out.txt").open("w") as out, (tmp_path / "err.txt").open("w") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=_env(), cwd=tmp_path)
        try:
            deadline = time.monotonic() + _HANG_S
            while not (run / "last.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.2)
            assert proc.poll() is None, (tmp_path / "err.txt").read_text()[-3000:]
            proc.send_signal(signal.SIGTERM)  # to the launcher only, as SageMaker signals the container's process
            proc.wait(timeout=_HANG_S)
        finally:
            if proc.poll() is None:
                _kill_tree(proc.pid)
    errors = (tmp_path / "err.txt").read_text()
    assert proc.returncode == 143, errors[-3000:]
    assert "Traceback" not in errors and "SignalException" not in errors
    assert "torchrun: stopped by SIGTERM" in errors and "Stopped by SIGTERM" in errors
    assert read_checkpoint(run / "last.pt")["training"]["state"]["epoch"] >= 2
