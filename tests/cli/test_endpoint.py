"""`meldctl endpoint deploy/invoke/list/delete` through the CLI, against moto's SageMaker and SeaweedFS S3."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import boto3
import botocore.client
import pytest
from aws_servers import (  # noqa: F401
    ROLE,
    aws_env,
    create_training_job,
    model_archive,
    moto_s3_env,
    moto_server,
    no_credentials,
    s3_client,
    s3_server,
)
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from meldctl.cli import app

runner = CliRunner()
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/meldctl:0.1.0"
# moto's list of endpoint instance types predates the g5 family (the default): these tests use g4dn.
SIZE = ["--instance-type", "ml.g4dn.xlarge", "--image", IMAGE, "--role", ROLE]


def test_dry_run_needs_no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_credentials(monkeypatch, tmp_path)
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"weights")
    args = ["endpoint", "deploy", str(checkpoint), "--endpoint", "meld-e1", "--bucket", "b", "--region", "eu-west-1"]
    result = runner.invoke(app, [*args, "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["region"] == "eu-west-1" and plan["upload"]["to"].startswith("s3://b/meldctl/endpoints/models/")
    assert plan["create_model"]["PrimaryContainer"]["ModelDataUrl"] == plan["upload"]["to"]
    assert plan["create_endpoint_config"]["ProductionVariants"][0]["InstanceType"] == "ml.g5.xlarge"
    assert plan["create_or_update_endpoint"]["EndpointName"] == "meld-e1"
    assert any("--role" in problem for problem in plan["problems"])
    table = runner.invoke(app, [*args, "--dry-run", "--serverless", "--memory-mb", "4096"])
    assert table.exit_code == 0 and table.stdout == ""
    assert "serverless, 4096 MB" in table.stderr and "dry run, nothing created" in table.stderr


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["job-1", "--endpoint", "bad_name"], 2, "not a SageMaker endpoint name"),
        (["job-1", "--endpoint", "e", "--output", "s3://b/x"], 2, "--async"),
        (["job-1", "--endpoint", "e", "--memory-mb", "2048"], 2, "--serverless"),
        (["missing/best.pt", "--endpoint", "e"], 2, "no checkpoint file missing/best.pt"),
    ],
)
def test_deploy_refusals_are_one_line(
    args: list[str], code: int, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_credentials(monkeypatch, tmp_path)
    result = runner.invoke(app, ["endpoint", "deploy", *args, "--region", "us-east-1", "--dry-run"])
    assert result.exit_code == code, result.output
    assert says in result.output and "Traceback" not in result.output


def test_deploy_invoke_list_delete(trained_run: Path, tmp_path: Path, aws_env: str, moto_server) -> None:  # noqa: ANN001, F811
    checkpoint = str(trained_run / "best.pt")
    deployed = runner.invoke(app, ["endpoint", "deploy", checkpoint, "--endpoint", "meld-cli", *SIZE,
                                   "--bucket", aws_env, "--json"])  # fmt: skip
    assert deployed.exit_code == 0, deployed.output
    done = json.loads(deployed.stdout)
    assert done["status"] == "InService" and done["updated"] is False and done["kind"] == "1 x ml.g4dn.xlarge"
    assert "loads (text+audio+video)" in deployed.stderr and "endpoint meld-cli: InService (0:00)" in deployed.stderr
    assert boto3.client("sagemaker").describe_model(ModelName=done["model"])["PrimaryContainer"]["Image"] == IMAGE

    answer = {"clip": "dia3_utt5.mp4", "text": "Hi", "emotion": {"neutral": 0.25, "joy": 0.75},
              "sentiment": {"positive": 1.0}, "top_emotion": "joy", "top_sentiment": "positive",
              "top_emotions": [["joy", 0.75], ["neutral", 0.25]], "warnings": ["text truncated"]}  # fmt: skip
    results = {"results": [{"Body": json.dumps(answer), "ContentType": "application/json"}]}
    request = urllib.request.Request(f"{moto_server.url}/moto-api/static/sagemaker/endpoint-results",
                                     data=json.dumps(results).encode(), method="POST")  # fmt: skip
    urllib.request.urlopen(request, timeout=10).close()
    clip = tmp_path / "dia3_utt5.mp4"
    clip.write_bytes(b"stands in for a clip")  # moto decodes request bodies as UTF-8: an mp4 would crash it
    invoked = runner.invoke(app, ["endpoint", "invoke", "meld-cli", str(clip), "--text", "Hi", "--json"])
    assert invoked.exit_code == 0, invoked.output
    assert json.loads(invoked.stdout) == answer
    shown = runner.invoke(app, ["endpoint", "invoke", "meld-cli", str(clip), "--text", "Hi"])
    assert "joy 0.75" in shown.stderr and "Warning: text truncated" in shown.stderr

    listed = runner.invoke(app, ["endpoint", "list", "--json"])
    assert [(e["name"], e["status"]) for e in json.loads(listed.stdout)] == [("meld-cli", "InService")]
    deleted = runner.invoke(app, ["endpoint", "delete", "meld-cli", "--yes", "--json"])
    assert deleted.exit_code == 0, deleted.output
    assert json.loads(deleted.stdout)["deleted"] == [
        "endpoint meld-cli",
        f"endpoint config {done['config']}",
        f"model {done['model']}",
    ]
    assert "No endpoints" in runner.invoke(app, ["endpoint", "list"]).stderr


def test_delete_asks_first(aws_env: str) -> None:  # noqa: F811
    result = runner.invoke(app, ["endpoint", "delete", "meld-x"], input="n\n")
    assert result.exit_code == 1 and "Delete endpoint meld-x" in result.output


def test_a_missing_endpoint_is_one_line(aws_env: str, tmp_path: Path) -> None:  # noqa: F811
    for args in (["invoke", "nope", "--text", "hi"], ["delete", "nope", "--yes"]):
        result = runner.invoke(app, ["endpoint", *args])
        assert result.exit_code == 1
        assert "no endpoint nope" in result.stderr and "meldctl endpoint list" in result.stderr


def test_a_broken_checkpoint_is_refused_before_anything_is_created(aws_env: str, tmp_path: Path) -> None:  # noqa: F811
    broken = tmp_path / "best.pt"
    broken.write_text("not a checkpoint")
    result = runner.invoke(app, ["endpoint", "deploy", str(broken), "--endpoint", "e", *SIZE, "--bucket", aws_env])
    assert result.exit_code == 1 and "not a meldctl checkpoint" in result.stderr
    assert boto3.client("sagemaker").list_models()["Models"] == []


def _deploy_job(bucket: str) -> list[str]:
    """`endpoint deploy` of a finished training job's model (nothing to load or upload: the failure tests are quick)."""
    create_training_job(bucket, "meldctl-job-1")
    key = "meldctl/meldctl-job-1/output/meldctl-job-1/output/model.tar.gz"
    s3_client().put_object(Bucket=bucket, Key=key, Body=model_archive({"best.pt": b"w"}))
    return ["endpoint", "deploy", "meldctl-job-1", "--endpoint", "e", *SIZE]


def _refuse(monkeypatch: pytest.MonkeyPatch, operation: str, error: dict | None = None, failed: str | None = None):  # noqa: ANN202
    """Let moto answer every call but `operation`, which AWS refuses with `error` (or reports `failed`)."""
    real = botocore.client.BaseClient._make_api_call

    def call(self, name: str, params: dict) -> dict:  # noqa: ANN001
        if name == operation and error is not None:
            raise ClientError({"Error": error}, name)
        found = real(self, name, params)
        if name == operation and failed is not None:
            found |= {"EndpointStatus": "Failed", "FailureReason": failed}
        return found

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", call)


def test_no_quota_is_one_line_and_leaves_nothing(
    aws_env: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quota = {"Code": "ResourceLimitExceeded", "Message": "The account-level service limit 'ml.g4dn.xlarge for "
             "endpoint usage' is 0 Instances, with current utilization of 0 Instances"}  # fmt: skip
    _refuse(monkeypatch, "CreateEndpoint", error=quota)
    result = runner.invoke(app, _deploy_job(aws_env))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "ResourceLimitExceeded" in result.stderr and "'ml.g4dn.xlarge for endpoint usage'" in result.stderr
    client = boto3.client("sagemaker")
    assert client.list_models()["Models"] == [] and client.list_endpoint_configs()["EndpointConfigs"] == []


def test_an_endpoint_that_fails_to_start_is_one_line_with_its_reason(
    aws_env: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reason = "The primary container for production variant AllTraffic did not pass the ping health check."
    _refuse(monkeypatch, "DescribeEndpoint", failed=reason)
    result = runner.invoke(app, _deploy_job(aws_env))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"endpoint e failed to start (Failed): {reason}" in result.stderr
    assert "meldctl endpoint delete e" in result.stderr


def test_a_role_sagemaker_refuses_is_one_line(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    error = {"Code": "ValidationException", "Message": "Could not assume role arn:aws:iam::1:role/x. Please ensure "
             "that the role exists and allows principal 'sagemaker.amazonaws.com' to assume the role."}  # fmt: skip
    _refuse(monkeypatch, "CreateModel", error=error)
    result = runner.invoke(app, _deploy_job(aws_env))
    assert result.exit_code == 1 and "Could not assume role" in result.stderr and "--role" in result.stderr


def test_ctrl_c_while_waiting_detaches(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from meldctl.remote import endpoint_lifecycle as lifecycle

    def interrupted(*args: object, **kwargs: object) -> dict:
        raise KeyboardInterrupt

    monkeypatch.setattr(lifecycle, "wait_for_endpoint", interrupted)
    result = runner.invoke(app, _deploy_job(aws_env))
    assert result.exit_code == 130 and "detached from endpoint e" in result.stderr
    assert "meldctl endpoint delete e" in result.stderr
    assert boto3.client("sagemaker").describe_endpoint(EndpointName="e")  # it goes on


def _timeline():  # noqa: ANN202
    """A small timeline as an endpoint's container would analyse it (two utterances, one with a warning)."""
    from meldctl.analysis.segments import Segmentation, Utterance
    from meldctl.analysis.timeline import Timeline
    from meldctl.inference import Prediction
    from meldctl.labels import EMOTIONS, SENTIMENTS

    utterances = [Utterance(0.5, 2.0, "Oh my God!", "Rachel"), Utterance(3.25, 5.0, "We were on a break.")]
    probabilities = [[0.05, 0.6, 0.05, 0.05, 0.1, 0.05, 0.1], [0.1, 0.05, 0.05, 0.1, 0.05, 0.05, 0.6]]
    predictions = [
        Prediction(None, u.text, dict(zip(EMOTIONS, p, strict=True)), dict(zip(SENTIMENTS, (0.2, 0.3, 0.5),
                   strict=True)), warnings=["text truncated"] if i else [])
        for i, (u, p) in enumerate(zip(utterances, probabilities, strict=True))
    ]  # fmt: skip
    model = {"checkpoint": "/opt/ml/model/best.pt", "modalities": ["text", "audio", "video"],
             "labels": {"emotion": list(EMOTIONS), "sentiment": list(SENTIMENTS)}}  # fmt: skip
    return Timeline("episode.mp4", 6.0, Segmentation("subtitles", "subtitles_text", utterances), model, utterances,
                    predictions, warnings=["1 cue skipped"], seconds={"total": 1.5})  # fmt: skip


def _answer_with(server, route: str, results: list[dict]) -> None:  # noqa: ANN001
    """What moto's SageMaker runtime answers the next invocations (`route`: endpoint-results, async-...)."""
    request = urllib.request.Request(f"{server.url}/moto-api/static/sagemaker/{route}",
                                     data=json.dumps({"results": results}).encode(), method="POST")  # fmt: skip
    urllib.request.urlopen(request, timeout=10).close()


def test_invoke_analyze_writes_what_meldctl_analyze_writes(aws_env: str, tmp_path: Path, moto_server) -> None:  # noqa: ANN001, F811
    from meldctl.analysis.outputs import render_outputs
    from meldctl.analysis.timeline import to_json

    timeline = _timeline()
    assert runner.invoke(app, [*_deploy_job(aws_env), "--bucket", aws_env]).exit_code == 0
    _answer_with(moto_server, "endpoint-results", [{"Body": json.dumps(to_json(timeline)), "ContentType":
                 "application/json"}])  # fmt: skip
    video = tmp_path / "episode.mp4"
    video.write_bytes(b"stands in for a whole video")
    (tmp_path / "episode.srt").write_text("1\n00:00:00,500 --> 00:00:02,000\nOh my God!\n", encoding="utf-8")
    result = runner.invoke(app, ["endpoint", "invoke", "e", str(video), "--analyze", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(json.dumps(to_json(timeline)))
    out = tmp_path / "episode.meldctl"
    expected = render_outputs(timeline)
    for name in ("timeline.json", "timeline.csv", "timeline.srt"):
        assert (out / name).read_bytes() == expected[name], name
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Warning: 1 cue skipped" in result.stderr


def test_invoke_analyze_on_an_async_endpoint_goes_through_s3(
    moto_s3_env: str,  # noqa: F811
    tmp_path: Path,
    moto_server,  # noqa: ANN001, F811
) -> None:
    """moto keeps async answers in its own S3: all of S3 is moto here."""
    from meldctl.analysis.timeline import to_json

    deployed = runner.invoke(app, [*_deploy_job(moto_s3_env), "--bucket", moto_s3_env, "--async"])
    assert deployed.exit_code == 0, deployed.output
    model = boto3.client("sagemaker").describe_model(ModelName=boto3.client("sagemaker").list_models()["Models"][0][
        "ModelName"])["PrimaryContainer"]  # fmt: skip
    inputs = f"{moto_s3_env}/meldctl/endpoints/e/inputs"
    assert model["Environment"]["MELDCTL_SERVE__ALLOW_S3"] == inputs  # the container may read what invoke uploads
    assert model["Environment"]["MELDCTL_SERVE__TIMEOUT_S"] == "3600"  # an async request may run for an hour
    answer = to_json(_timeline())
    too_long = '{"error": "the video is 42.0 minutes, over the limit of 30"}'
    _answer_with(moto_server, "async-endpoint-results", [{"data": json.dumps(answer)}, {"data": json.dumps(answer)},
                 {"is_failure": True, "data": too_long}])  # fmt: skip
    small, large = tmp_path / "small.mp4", tmp_path / "large.mp4"
    small.write_bytes(b"v" * 1000)
    large.write_bytes(b"v" * (5 * 2**20))  # over the 6 MB of a request once in base64
    cue = "1\n00:00:00,500 --> 00:00:02,000\nRACHEL: Oh my God!\n"
    (tmp_path / "small.srt").write_bytes(b"\xff\xfe" + cue.encode("utf-16-le"))  # found beside it, sent as text
    for video in (small, large):
        out = tmp_path / f"out-{video.stem}"
        result = runner.invoke(app, ["endpoint", "invoke", "e", str(video), "--analyze", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert json.loads((out / "timeline.json").read_text()) == json.loads(json.dumps(answer))
    s3 = boto3.client("s3")
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=moto_s3_env, Prefix=inputs.split("/", 1)[1])["Contents"]]
    bodies = [json.loads(s3.get_object(Bucket=moto_s3_env, Key=key)["Body"].read()) for key in keys if
              key.endswith(".request")]  # fmt: skip
    # the small video inline with its subtitles, the large one by S3
    assert sorted(sorted(body) for body in bodies) == [["subtitles_text", "video_b64"], ["video_s3"]]
    assert next(body["subtitles_text"] for body in bodies if "video_b64" in body) == cue
    uploaded = next(body["video_s3"] for body in bodies if "video_s3" in body)
    assert uploaded.startswith(f"s3://{inputs}/") and uploaded.endswith("/large.mp4")
    assert s3.head_object(Bucket=moto_s3_env, Key=uploaded.split("/", 3)[3])["ContentLength"] == 5 * 2**20
    refused = runner.invoke(app, ["endpoint", "invoke", "e", str(small), "--analyze", "--out", str(tmp_path / "x")])
    assert refused.exit_code == 1 and "over the limit of 30" in refused.stderr and "Traceback" not in refused.output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--analyze"], "--analyze takes a VIDEO"),
        (["VIDEO", "--analyze", "--text", "hi"], "--analyze takes a VIDEO"),
        (["VIDEO", "--analyze", "--context", "Rachel: hi"], "no --text or --context"),
        (["VIDEO", "--out", "o"], "go with --analyze"),
        (["VIDEO", "--analyze", "--subtitles", "s.srt", "--segment", "vad"], "--subtitles cannot be used"),
    ],
)
def test_invoke_analyze_refusals(args: list[str], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_credentials(monkeypatch, tmp_path)
    (tmp_path / "v.mp4").write_bytes(b"v")
    result = runner.invoke(app, ["endpoint", "invoke", "e", *[str(tmp_path / "v.mp4") if a == "VIDEO" else a
                                                              for a in args]])  # fmt: skip
    assert result.exit_code == 2 and says in " ".join(result.output.replace("│", " ").split()), result.output


def test_invoke_needs_no_permission_to_describe_the_model(
    aws_env: str,  # noqa: F811
    moto_server,  # noqa: ANN001, F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DescribeModel only finds the inputs prefix the deploy allowed: refused, the settings' bucket serves."""
    assert runner.invoke(app, [*_deploy_job(aws_env), "--bucket", aws_env]).exit_code == 0
    answer = {"clip": None, "text": "hi", "emotion": {"joy": 1.0}, "sentiment": {"positive": 1.0}}
    _answer_with(moto_server, "endpoint-results", [{"Body": json.dumps(answer), "ContentType": "application/json"}])
    _refuse(monkeypatch, "DescribeModel", error={"Code": "AccessDeniedException", "Message": "not authorized"})
    result = runner.invoke(app, ["endpoint", "invoke", "e", "--text", "hi", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == answer
