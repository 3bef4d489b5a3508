from __future__ import annotations

import os
from pathlib import Path

import pytest
from aws_servers import aws_env, moto_s3_env, moto_server, s3_client, s3_server  # noqa: F401
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meldctl.remote.s3 import local_target, locate, sync_down, upload_file, upload_folder


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def age(path: Path, seconds: float) -> None:
    """Set the file's modification time `seconds` in the past (as a file written before its upload)."""
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime - seconds))


def test_upload_sends_only_missing_and_changed_files(tmp_path: Path, aws_env: str) -> None:  # noqa: F811
    data = tmp_path / "data"
    write(data / "manifest" / "train.jsonl", b'{"a": 1}\n')
    write(data / "audio" / "train" / "x.wav", b"RIFF1234")
    write(data / "raw" / "MELD.Raw.tar.gz", b"archive")
    write(data / "manifest" / ".dev.jsonl.abc.tmp", b"half")
    client = s3_client()
    uri = f"s3://{aws_env}/meldctl/data/prepared"

    first = upload_folder(client, data, uri, exclude=("raw",))
    assert sorted(first.moved) == ["audio/train/x.wav", "manifest/train.jsonl"]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=aws_env, Prefix="meldctl/data/")["Contents"]}
    assert keys == {"meldctl/data/prepared/audio/train/x.wav", "meldctl/data/prepared/manifest/train.jsonl"}

    again = upload_folder(client, data, uri, exclude=("raw",))
    assert again.moved == [] and len(again.skipped) == 2

    write(data / "audio" / "train" / "x.wav", b"RIFF5678")  # same size, new content, modified after the upload
    os.utime(data / "audio" / "train" / "x.wav", (0, (data / "audio" / "train" / "x.wav").stat().st_mtime + 5))
    write(data / "manifest" / "dev.jsonl", b"{}\n")
    changed = upload_folder(client, data, uri, exclude=("raw",))
    assert sorted(changed.moved) == ["audio/train/x.wav", "manifest/dev.jsonl"]
    body = client.get_object(Bucket=aws_env, Key="meldctl/data/prepared/audio/train/x.wav")["Body"].read()
    assert body == b"RIFF5678"


def test_parallel_and_one_at_a_time_upload_the_same_objects(tmp_path: Path, aws_env: str) -> None:  # noqa: F811
    data = tmp_path / "data"
    files = {f"split{i % 3}/clip{i}.wav": os.urandom(100 + i) for i in range(40)}
    for name, body in files.items():
        write(data / name, body)
    client = s3_client()
    progress: list[tuple[int, int]] = []
    parallel = upload_folder(client, data, f"s3://{aws_env}/p", workers=8, on_progress=lambda *p: progress.append(p))
    serial = upload_folder(client, data, f"s3://{aws_env}/s", workers=1)
    assert sorted(parallel.moved) == sorted(serial.moved) == sorted(files)
    assert progress == [(n, 40) for n in range(1, 41)]
    assert parallel.bytes == serial.bytes == sum(len(b) for b in files.values())
    for name, body in files.items():
        for prefix in ("p", "s"):
            assert client.get_object(Bucket=aws_env, Key=f"{prefix}/{name}")["Body"].read() == body


def test_unchanged_files_are_skipped_whatever_the_etag(tmp_path: Path, moto_s3_env: str) -> None:  # noqa: F811
    # An object uploaded in parts (or encrypted with SSE-KMS) has an ETag that is not the file's MD5: skipping by
    # size and time must not care.
    big = write(tmp_path / "data" / "features.bin", os.urandom(6 * 1024 * 1024))
    client = s3_client()
    key = "data/features.bin"
    upload = client.create_multipart_upload(Bucket=moto_s3_env, Key=key)
    parts = []
    for number, start in enumerate(range(0, big.stat().st_size, 5 * 1024 * 1024), 1):
        chunk = big.read_bytes()[start : start + 5 * 1024 * 1024]
        part = client.upload_part(Bucket=moto_s3_env, Key=key, UploadId=upload["UploadId"], PartNumber=number,
                                  Body=chunk)  # fmt: skip
        parts.append({"ETag": part["ETag"], "PartNumber": number})
    client.complete_multipart_upload(Bucket=moto_s3_env, Key=key, UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": parts})  # fmt: skip
    assert client.head_object(Bucket=moto_s3_env, Key=key)["ETag"].strip('"').endswith("-2")
    age(big, 60)
    report = upload_folder(client, tmp_path / "data", f"s3://{moto_s3_env}/data")
    assert report.moved == [] and report.skipped == ["features.bin"]
    assert upload_file(client, big, f"s3://{moto_s3_env}/{key}").moved == []


@pytest.mark.parametrize(
    "key",
    ["/abs/path/file", "../escape", "a/../../escape", "a\\..\\b", "./dot", "a//b", "", "..", "a/./b", "nul\0x"],
)
def test_unsafe_keys_have_no_local_target(tmp_path: Path, key: str) -> None:
    assert local_target(tmp_path / "dest", key) is None


def test_safe_keys_stay_under_the_destination(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    assert local_target(dest, "eval/events.out.1") == (dest / "eval" / "events.out.1").resolve()
    (dest).mkdir()
    (dest / "link").symlink_to(tmp_path)  # a symlink already there must not lead outside either
    assert local_target(dest, "link/evil") is None


def test_sync_skips_hostile_keys_and_brings_the_rest(tmp_path: Path, moto_s3_env: str) -> None:  # noqa: F811
    client = s3_client()
    prefix = "meldctl/job/tensorboard"
    hostile = [f"{prefix}//{tmp_path}/outside/abs", f"{prefix}/../escape", f"{prefix}/a/../../escape2",
               f"{prefix}/a\\..\\..\\win", f"{prefix}/./dot"]  # fmt: skip
    for key in [*hostile, f"{prefix}/events.out.1", f"{prefix}/eval/events.out.2"]:
        client.put_object(Bucket=moto_s3_env, Key=key, Body=b"x")
    dest = tmp_path / "run" / "tensorboard"
    report = sync_down(client, f"s3://{moto_s3_env}/{prefix}", dest)
    assert sorted(report.moved) == ["eval/events.out.2", "events.out.1"]
    assert sorted(report.refused) == sorted(hostile)
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {"run/tensorboard/events.out.1", "run/tensorboard/eval/events.out.2"}


def test_sync_copies_new_files_and_only_the_tail_of_grown_ones(tmp_path: Path, aws_env: str) -> None:  # noqa: F811
    client = s3_client()
    prefix = "meldctl/job/tensorboard"
    client.put_object(Bucket=aws_env, Key=f"{prefix}/events.out.tfevents.1", Body=b"A" * 100)
    client.put_object(Bucket=aws_env, Key=f"{prefix}/dev/events.out.tfevents.2", Body=b"B" * 50)
    dest = tmp_path / "tb"
    uri = f"s3://{aws_env}/{prefix}"

    first = sync_down(client, uri, dest)
    assert sorted(first.moved) == ["dev/events.out.tfevents.2", "events.out.tfevents.1"] and first.bytes == 150

    client.put_object(Bucket=aws_env, Key=f"{prefix}/events.out.tfevents.1", Body=b"A" * 100 + b"C" * 20)
    grown = sync_down(client, uri, dest)
    assert grown.moved == ["events.out.tfevents.1"] and grown.bytes == 20  # the new tail only
    assert (dest / "events.out.tfevents.1").read_bytes() == b"A" * 100 + b"C" * 20
    assert grown.skipped == ["dev/events.out.tfevents.2"]

    assert sync_down(client, uri, dest).moved == []


def test_an_interrupted_sync_finishes_on_the_next_run(
    tmp_path: Path,
    aws_env: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = s3_client()
    for name in ("a", "b", "c"):
        client.put_object(Bucket=aws_env, Key=f"tb/events.{name}", Body=name.encode() * 10)
    dest = tmp_path / "tb"
    real_download = client.download_file
    calls: list[str] = []

    def flaky(bucket: str, key: str, filename: str) -> None:
        calls.append(key)
        if key.endswith(".b"):
            Path(filename).write_bytes(b"bb")  # a partial download ...
            raise ConnectionError("network dropped")  # ... then the connection goes
        real_download(bucket, key, filename)

    monkeypatch.setattr(client, "download_file", flaky)
    with pytest.raises(ConnectionError):
        sync_down(client, f"s3://{aws_env}/tb", dest)
    assert (dest / "events.a").is_file() and not (dest / "events.b").exists()
    assert not [p for p in dest.iterdir() if p.name.endswith(".tmp")]  # no half file left behind

    monkeypatch.setattr(client, "download_file", real_download)
    rerun = sync_down(client, f"s3://{aws_env}/tb", dest)
    assert rerun.moved == ["events.b", "events.c"] and rerun.skipped == ["events.a"]
    assert (dest / "events.b").read_bytes() == b"b" * 10


segments = st.sampled_from(["", ".", "..", "a", "b", "événement", "x" * 300, "a\\b", "c\0", " ", "~", "$HOME"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.one_of(st.lists(segments, min_size=1, max_size=6).map("/".join), st.text(max_size=80)))
def test_a_key_never_maps_outside_the_destination(tmp_path: Path, key: str) -> None:
    """Any key, hostile or not: a path strictly inside the destination or a reason, never an exception."""
    dest = tmp_path / "dest"
    if not (dest / "~").is_symlink():
        dest.mkdir(exist_ok=True)
        (dest / "~").symlink_to(tmp_path)  # a link already there that leads out: `~/x` must go nowhere
    target, why = locate(dest, key)
    if target is None:
        assert why
    else:
        assert not why and target.is_relative_to(dest.resolve()) and target != dest.resolve()
        assert target == dest.resolve().joinpath(*key.split("/")) and not key.startswith("~/")
