from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import children
from typer.testing import CliRunner

from meldctl.cli import app
from meldctl.model.checkpoint import load_checkpoint, read_checkpoint

runner = CliRunner()


def _args(data: Path, tiny_bert: Path, run: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--data-dir",
        str(data),
        "--run-dir",
        str(run),
        "--text-model",
        str(tiny_bert),
        "--video-weights",
        "none",
        "--workers",
        "0",
        "--batch-size",
        "8",
        *extra,
    ]


@pytest.fixture
def fast_sample(prepared_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Small clips and short audio keep the CLI runs quick."""
    monkeypatch.setenv("MELDCTL_MODEL__NUM_FRAMES", "4")
    monkeypatch.setenv("MELDCTL_MODEL__RESIZE_SIZE", "36,48")
    monkeypatch.setenv("MELDCTL_MODEL__CROP_SIZE", "32")
    monkeypatch.setenv("MELDCTL_MODEL__AUDIO_SECONDS", "2")
    return prepared_copy


def test_train_json_then_resume(fast_sample: Path, tiny_bert: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = runner.invoke(app, [*_args(fast_sample, tiny_bert, run), "--epochs", "2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs_run"] == 2 and summary["stopped"] == "completed"
    assert Path(summary["best_checkpoint"]).is_file() and Path(summary["last_checkpoint"]).is_file()
    assert 0 <= summary["best_dev"]["dev_emotion_weighted_f1"] <= 1
    assert list(Path(summary["tensorboard"]).glob("events.out.tfevents.*"))
    assert "[train]" in (run / "settings.toml").read_text()
    load_checkpoint(run / "best.pt")
    result = runner.invoke(app, [*_args(fast_sample, tiny_bert, run), "--epochs", "3", "--resume", str(run), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["epochs_run"] == 1
    assert read_checkpoint(run / "last.pt")["training"]["state"]["epoch"] == 4


def test_every_option_that_overrides_a_setting_names_one() -> None:
    from meldctl.cli.train import FLAGS
    from meldctl.settings import SECTIONS

    assert len({flag.name for flag in FLAGS}) == len(FLAGS)
    for flag in FLAGS:
        assert flag.section is None or flag.name in SECTIONS[flag.section].model_fields, flag.name


def test_options_reach_their_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each local option lands on its own setting (the boundary below the command, `run_local`, is patched)."""
    import meldctl.cli.train_local as train_local

    seen: dict = {}
    monkeypatch.setattr(train_local, "run_local", lambda settings, **kwargs: seen.update(settings=settings, **kwargs))
    args = [
        "train", "--data-dir", str(tmp_path / "d"), "--run-dir", str(tmp_path / "r"), "--epochs", "3",
        "--batch-size", "4", "--lr", "0.5", "--modalities", "audio,text", "--text-model", "minilm",
        "--video-weights", "none", "--finetune-text", "--device", "cpu", "--no-cache", "--seed", "7",
        "--workers", "0", "--json",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    s = seen["settings"]
    assert (s.data.data_dir, s.data.cache) == (tmp_path / "d", False)
    assert (s.model.modalities, s.model.text_model, s.model.video_weights, s.model.freeze_text) == (
        ("text", "audio"),
        "minilm",
        "none",
        False,
    )
    assert (s.train.run_dir, s.train.epochs, s.train.batch_size, s.train.lr) == (tmp_path / "r", 3, 4, 0.5)
    assert (s.train.device, s.train.seed, s.train.workers) == ("cpu", 7, 0)
    assert seen["resume"] is None and seen["as_json"] is True
    assert s.remote == type(s.remote)()  # no remote option given: the defaults


def test_bad_inputs_are_one_line(fast_sample: Path, tiny_bert: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, _args(tmp_path / "nothing", tiny_bert, tmp_path / "r"))
    assert result.exit_code == 1 and "no manifest" in result.output and "meldctl prepare" in result.output
    result = runner.invoke(app, [*_args(fast_sample, tiny_bert, tmp_path / "r"), "--modalities", "smell"])
    assert result.exit_code == 2 and "unknown modality" in result.output
    result = runner.invoke(app, [*_args(fast_sample, tiny_bert, tmp_path / "r"), "--resume", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "--resume" in result.output
    assert "Traceback" not in result.output


def test_bad_labels_and_empty_splits_are_one_line_before_any_cache(
    fast_sample: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    import dataclasses

    from meldctl.data.manifest import read_manifest, write_manifest

    rows = {split: read_manifest(fast_sample, split) for split in ("train", "dev")}
    cases = [
        ("train", [*rows["train"][:3], dataclasses.replace(rows["train"][3], emotion="ecstatic")], "train.jsonl:4"),
        ("dev", [dataclasses.replace(rows["dev"][0], sentiment="mixed")], "unknown sentiment 'mixed'"),
        ("train", [], "0 train utterances"),
        ("train", rows["train"][:1], "1 train utterances"),
        ("dev", [], "0 dev utterances"),
    ]
    for split, bad, needle in cases:
        write_manifest(fast_sample, split, bad)
        result = runner.invoke(app, _args(fast_sample, tiny_bert, tmp_path / "run"))
        assert result.exit_code == 1 and needle in result.output, result.output
        assert len(result.output.strip().splitlines()) == 2 and "Hint:" in result.output  # one line and its hint
        assert not (fast_sample / "cache").exists(), "refused before any feature is computed"
        assert not (tmp_path / "run").exists()
        write_manifest(fast_sample, split, rows[split])
    result = runner.invoke(app, [*_args(fast_sample, tiny_bert, tmp_path / "run"), "--lr", "inf"])
    assert result.exit_code == 2 and "train.lr = inf" in result.output and "finite" in result.output
    assert not (tmp_path / "run").exists()


def test_a_diverging_run_stops_with_one_line_and_no_checkpoint(
    fast_sample: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = [*_args(fast_sample, tiny_bert, run), "--modalities", "text", "--lr", "1e30", "--epochs", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "training diverged: the training loss is no longer finite (epoch 1, batch" in result.output
    assert "lower the learning rate (lr = 1e+30" in result.output and "Traceback" not in result.output
    assert not run.exists() or not list(run.glob("*.pt"))


def _env() -> dict[str, str]:
    # The autouse fixture already dropped the user's MELDCTL_* variables; keep the ones the test set.
    return {**os.environ, "PYTHONUNBUFFERED": "1", "MELDCTL_TRAIN__WORKERS": "0", "COLUMNS": "200"}


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_a_signal_saves_last_and_says_how_to_resume(
    fast_sample: Path, tiny_bert: Path, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    run = tmp_path / "run"
    args = _args(fast_sample, tiny_bert, run, "--modalities", "text", "--epochs", "10000")
    proc = subprocess.Popen(
        [sys.executable, "-m", "meldctl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )
    deadline = time.monotonic() + 240
    while not (run / "last.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"Stopped by {sig.name}" in err and "resume with: meldctl train --resume" in err
    assert "Traceback" not in err
    assert read_checkpoint(run / "last.pt")["training"]["state"]["epoch"] >= 2
    load_checkpoint(run / "best.pt")


CONTEXT = ["--context-past", "2", "--context-future", "1"]


@pytest.mark.parametrize("context", [[], CONTEXT], ids=["alone", "context"])
def test_torchrun_two_processes_on_cpu(fast_sample: Path, tiny_bert: Path, tmp_path: Path, context: list[str]) -> None:
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        "-m",
        "meldctl",
        *_args(fast_sample, tiny_bert, run),
        "--modalities",
        "text,audio",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--json",
        *context,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)  # one document: only rank 0 reports
    assert summary["epochs_run"] == 2
    config = load_checkpoint(run / "best.pt").model.config
    assert config.modalities == ("text", "audio")
    assert (config.context_past, config.context_future) == ((2, 1) if context else (0, 0))
    assert out.stderr.count("[meldctl] epoch=1") == 1, "only rank 0 logs epochs"
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) >= 1


@pytest.mark.parametrize("context", [[], CONTEXT], ids=["alone", "context"])
def test_resume_from_anywhere_takes_the_runs_settings_and_ends_like_an_uninterrupted_run(
    fast_sample: Path, tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, context: list[str]
) -> None:
    """Stopped after epoch 2 of 4, `meldctl train --resume RUN` alone, from another folder, finishes the run with
    its own settings (data folder, epochs, model) and ends with the weights of 4 uninterrupted epochs."""
    import torch

    flags = ["--modalities", "text", "--epochs", "4", "--seed", "3", *context]
    whole = runner.invoke(app, [*_args(fast_sample, tiny_bert, tmp_path / "whole"), *flags, "--json"])
    assert whole.exit_code == 0, whole.output
    from meldctl.training import trainer

    real_fit, batches = trainer._fit, {"n": 0}

    def stop_after_epoch_two(run, state, loader, sampler):  # noqa: ANN001, ANN202
        def should_stop() -> bool:
            batches["n"] += 1
            return batches["n"] == 2 * len(sampler)  # the last batch of epoch 2

        run.should_stop = should_stop
        return real_fit(run, state, loader, sampler)

    monkeypatch.setattr(trainer, "_fit", stop_after_epoch_two)
    run = tmp_path / "run"
    stopped = runner.invoke(app, [*_args(fast_sample, tiny_bert, run), *flags])
    assert stopped.exit_code == 143 and "resume with: meldctl train --resume" in stopped.output
    monkeypatch.setattr(trainer, "_fit", real_fit)
    saved = read_checkpoint(run / "last.pt")["training"]["state"]
    assert saved["epoch"] == 2 and saved["batches_done"] > 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no ./data here: the data folder must come from the run's settings
    for name in list(os.environ):
        if name.startswith("MELDCTL_MODEL__"):
            monkeypatch.delenv(name)  # nor may the model settings come from this shell
    resumed = runner.invoke(app, ["train", "--resume", str(run), "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["epochs_run"] == 3  # the end of epoch 2, then 3 and 4: not on to 10
    final = read_checkpoint(run / "last.pt")
    expected = read_checkpoint(tmp_path / "whole" / "last.pt")
    assert all(torch.equal(final["state_dict"][k], expected["state_dict"][k]) for k in expected["state_dict"])
    saved_settings = (run / "settings.toml").read_text()
    assert f'data_dir = "{fast_sample.resolve()}"' in saved_settings and "\nrun_dir =" not in saved_settings


def test_repeating_a_runs_settings_never_writes_into_it(fast_sample: Path, tiny_bert: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = runner.invoke(app, [*_args(fast_sample, tiny_bert, run), "--modalities", "text", "--epochs", "1"])
    assert first.exit_code == 0, first.output
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    again = runner.invoke(app, ["--config", str(run / "settings.toml"), "train", "--json"])
    assert again.exit_code == 0, again.output
    assert Path(json.loads(again.stdout)["run_dir"]).parent == (tmp_path / "runs").resolve()
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
    refused = runner.invoke(app, [*_args(fast_sample, tiny_bert, run), "--modalities", "text"])
    assert refused.exit_code == 1 and "already holds a training run" in refused.output and "--resume" in refused.output


def test_a_command_that_fails_its_checks_creates_nothing(fast_sample: Path, tiny_bert: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = runner.invoke(app, _args(tmp_path / "nothing", tiny_bert, run))
    assert result.exit_code == 1 and not run.exists()
    result = runner.invoke(app, [*_args(fast_sample, tiny_bert, run), "--text-model", str(tmp_path / "no-bert")])
    assert result.exit_code == 1 and not run.exists()
    result = runner.invoke(app, [*_args(fast_sample, tiny_bert, run), "--batch-size", "1"])
    assert result.exit_code == 2 and "batch_size" in result.output and not run.exists()
    assert "Traceback" not in result.output


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(predicate, seconds: float = 240) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_a_signal_during_the_cache_build_is_one_line_and_keeps_the_rows(
    prepared_copy: Path, tiny_bert: Path, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    run = tmp_path / "run"
    args = _args(prepared_copy, tiny_bert, run, "--modalities", "video", "--epochs", "1")  # 16 frames of 112x112
    proc = subprocess.Popen([sys.executable, "-m", "meldctl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(), start_new_session=True)  # fmt: skip
    assert _wait_for(lambda: list(prepared_copy.glob("cache/video_features-*/train.partial.npy")) or proc.poll())
    os.killpg(proc.pid, sig)  # the whole process group, as a terminal's Ctrl-C or `kill -TERM -PGID` does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"Stopped by {sig.name}" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith(("Stopped", "Error"))]) == 1
    assert not run.exists()  # nothing to resume yet: no run folder left behind
    assert _wait_for(lambda: not _group_alive(proc.pid), 30)


def test_sigterm_to_the_group_while_workers_decode_and_workers_die_with_their_parent(
    prepared_copy: Path, tiny_bert: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    args = [
        *_args(prepared_copy, tiny_bert, run, "--no-cache", "--modalities", "audio", "--epochs", "50"),
        "--workers",
        "2",
    ]
    env = {**_env(), "MELDCTL_TRAIN__WORKERS": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "meldctl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)  # fmt: skip
    assert _wait_for(lambda: (run / "settings.toml").exists() or proc.poll() is not None), proc.communicate()[1]
    assert _wait_for(lambda: len(children(proc.pid)) >= 2 or proc.poll() is not None)  # the loader's workers
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Stopped by SIGTERM" in err and "Traceback" not in err and "DataLoader worker" not in err
    read_checkpoint(run / "last.pt")
    # Killed outright (SIGKILL: no chance to clean up), the parent must not leave its decoding workers behind.
    proc = subprocess.Popen([sys.executable, "-m", "meldctl", *args, "--resume", str(run)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)  # fmt: skip
    assert _wait_for(lambda: len(children(proc.pid)) >= 2)
    workers = children(proc.pid)
    proc.kill()
    proc.wait()
    assert _wait_for(lambda: not any(_running(w) for w in workers), 20), "workers outlived the parent"


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit status may wait a while for the container's init to collect)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
