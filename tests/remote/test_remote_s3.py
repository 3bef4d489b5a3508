from __future__ import annotations

from pathlib import Path

import pytest
from aws_servers import aws_env, moto_server, s3_client, s3_server  # noqa: F401

from meldctl.remote.s3 import local_etag, sync_down, upload_folder


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_local_etag_matches_s3_for_single_and_multipart(tmp_path: Path) -> None:
    path = write(tmp_path / "f", b"hello")
    assert local_etag(path) == "5d41402abc4b2a76b9719d911017c592"
    big = write(tmp_path / "g", b"a" * 10)
    assert local_etag(big, chunk=4).endswith("-3")


def test_upload_sends_only_changed_files(tmp_path: Path, aws_env: str) -> None:  # noqa: F811
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

    write(data / "audio" / "train" / "x.wav", b"RIFF5678")  # same size, new content
    write(data / "manifest" / "dev.jsonl", b"{}\n")
    changed = upload_folder(client, data, uri, exclude=("raw",))
    assert sorted(changed.moved) == ["audio/train/x.wav", "manifest/dev.jsonl"]
    body = client.get_object(Bucket=aws_env, Key="meldctl/data/prepared/audio/train/x.wav")["Body"].read()
    assert body == b"RIFF5678"


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
