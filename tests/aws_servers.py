"""Local stand-ins for AWS, shared by the remote tests: moto (SageMaker, CloudWatch Logs) and SeaweedFS (S3).

Each server starts once per test session on 127.0.0.1 at a free port, the first time a test asks for it, and
pytest stops it when the session ends. `aws_env` points boto3 at them with fake credentials and makes every
other HTTP(S) request fail fast, so no test can reach a real AWS endpoint.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import tar_gz_bytes

BIN = Path(sys.executable).parent
ROLE = "arn:aws:iam::123456789012:role/meldctl-test"


@dataclass
class Server:
    process: subprocess.Popen
    url: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _binary(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is not installed (pip install -e '.[dev]')"
    return found


def _wait_until(check, server: Server, what: str, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {server.process.returncode}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{what} did not start within {timeout} s")


def start_moto(log: Path) -> Server:
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen([_binary("moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out)
    server = Server(process, f"http://127.0.0.1:{port}")

    def up() -> bool:
        with urllib.request.urlopen(f"{server.url}/moto-api/", timeout=2) as response:
            return response.status == 200

    _wait_until(up, server, "moto_server")
    return server


def start_weed(folder: Path) -> Server:
    names = ("master", "volume", "filer", "s3", "admin", "webdav")
    ports = {name: free_port() for name in names}
    # gRPC ports default to the HTTP port + 10000, which overflows for high ephemeral ports: pick them too.
    grpc = [f"-{name}.port.grpc={free_port()}" for name in ("master", "volume", "filer", "s3", "admin")]
    command = [
        _binary("weed"), "mini", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}", f"-volume.port={ports['volume']}", f"-filer.port={ports['filer']}",
        f"-s3.port={ports['s3']}", f"-admin.port={ports['admin']}", f"-webdav.port={ports['webdav']}",
        "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
        *grpc,
    ]  # fmt: skip
    with open(folder / "weed.log", "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=out, cwd=folder)
    server = Server(process, f"http://127.0.0.1:{ports['s3']}")

    def up() -> bool:
        import boto3

        s3 = boto3.client(
            "s3", endpoint_url=server.url, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        s3.create_bucket(Bucket="meldctl-probe")
        s3.put_object(Bucket="meldctl-probe", Key="probe", Body=b"ok")
        return True

    _wait_until(up, server, "weed mini")
    return server


def _shared(request: pytest.FixtureRequest, key: str, start) -> Server:  # noqa: ANN001
    """One server per session, whichever test module asks first; pytest stops it at the end of the session."""
    servers = request.config.__dict__.setdefault("_meldctl_servers", {})
    if key not in servers:
        servers[key] = start()
        request.config.add_cleanup(servers[key].stop)
    return servers[key]


@pytest.fixture
def moto_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Server:
    server = _shared(request, "moto", lambda: start_moto(tmp_path_factory.getbasetemp() / "moto.log"))
    reset = urllib.request.Request(f"{server.url}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()  # every test starts with no jobs and no logs
    return server


@pytest.fixture
def s3_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Server:
    return _shared(request, "weed", lambda: start_weed(tmp_path_factory.mktemp("seaweedfs")))


def local_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **endpoints: str) -> None:
    """Fake credentials, no AWS configuration, and `endpoints` (AWS_ENDPOINT_URL...) as environment variables;
    anything else over HTTP(S) goes to a closed port and fails at once, so no test can reach a real AWS."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    settings = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "SAGEMAKER_VALIDATE_ROLE": "false",  # moto cannot simulate IAM policies
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
        **endpoints,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, moto_server: Server, s3_server: Server) -> str:
    """Fake credentials, SageMaker and CloudWatch Logs in moto, S3 in SeaweedFS; returns a fresh bucket's name."""
    local_aws(monkeypatch, tmp_path, AWS_ENDPOINT_URL=moto_server.url, AWS_ENDPOINT_URL_SAGEMAKER=moto_server.url,
              AWS_ENDPOINT_URL_CLOUDWATCH_LOGS=moto_server.url, AWS_ENDPOINT_URL_S3=s3_server.url)  # fmt: skip
    bucket = f"meldctl-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def moto_s3_env(aws_env: str, moto_server: Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """`aws_env` with S3 in moto too: moto keeps any key as given (SeaweedFS refuses `..`) and knows bucket
    regions, as S3 does. Returns a fresh bucket's name (in us-east-1)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server.url)
    bucket = f"meldctl-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=bucket)
    return bucket


def s3_client():  # noqa: ANN201
    import boto3

    return boto3.client("s3")


def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment with no AWS credentials, no AWS configuration and no instance metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")


def model_archive(files: dict[str, bytes]) -> bytes:
    """A model.tar.gz as SageMaker makes it from SM_MODEL_DIR."""
    return tar_gz_bytes(files)


def create_training_job(bucket: str, name: str, *, instance_count: int = 1) -> str:
    """A job as moto records it (Completed at once; its model at OUTPUT/NAME/output/model.tar.gz) whose
    TensorBoard prefix is in `bucket`; returns that prefix's key."""
    import boto3

    prefix = f"meldctl/{name}/tensorboard"
    boto3.client("sagemaker").create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/meldctl/{name}/output"},
        ResourceConfig={"InstanceType": "ml.g5.xlarge", "InstanceCount": instance_count, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 600},
        TensorBoardOutputConfig={"S3OutputPath": f"s3://{bucket}/{prefix}", "LocalPath": "/opt/ml/output/tensorboard"},
    )
    return prefix


# --- a server that answers what AWS never does ------------------------------------------------------------------

FAULTS = ("closed", "html", "garbage", "bad500", "throttle", "expired")
"""What `FaultServer` answers every request with (`closed`: nothing listens on the port at all)."""
HTML_PAGE = b"<!DOCTYPE html><html><head><title>Wi-Fi</title></head><body>Sign in to continue</body></html>"
GARBAGE = bytes(range(128, 256)) * 8  # not UTF-8, not JSON, not XML


class FaultServer:
    """An HTTP server on 127.0.0.1 standing in for every AWS endpoint, answering each request with `fault`:

    an HTML page with 200 (a captive portal), binary garbage with 200, a 500 whose body is not UTF-8, AWS's own
    throttling errors (JSON `ThrottlingException`; S3's XML `SlowDown` with 503) and expired-token errors
    (JSON `ExpiredTokenException`; S3's XML `ExpiredToken`, and a bare 400 to a HEAD request, as S3 sends them).
    """

    def __init__(self) -> None:
        import http.server
        import threading

        self.fault = "html"
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests.append(f"{self.command} {self.path}")
                is_json = "X-Amz-Target" in self.headers or "json" in self.headers.get("Content-Type", "")
                status, kind, body = server.response(is_json)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def response(self, is_json: bool) -> tuple[int, str, bytes]:
        """(status, Content-Type, body) of the current fault."""
        import json

        def error(status: int, code: str, message: str) -> tuple[int, str, bytes]:
            if is_json:
                return status, "application/x-amz-json-1.1", json.dumps({"__type": code, "message": message}).encode()
            xml = (
                f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
            )
            return status, "application/xml", xml.encode()

        if self.fault == "html":
            return 200, "text/html; charset=utf-8", HTML_PAGE
        if self.fault == "garbage":
            return 200, "application/octet-stream", GARBAGE
        if self.fault == "bad500":
            return 500, "text/plain", b"\xff\xfe\x80 upstream failed \xc3\x28"
        if self.fault == "throttle":
            if is_json:
                return error(400, "ThrottlingException", "Rate exceeded")
            return error(503, "SlowDown", "Please reduce your request rate.")
        if self.fault == "expired":
            message = "The security token included in the request is expired"
            return error(400, "ExpiredTokenException" if is_json else "ExpiredToken", message)
        raise AssertionError(f"unknown fault {self.fault}")

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def fault_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str) -> None:
    """Fake credentials and every AWS endpoint at `url`; one retry, so throttling costs under a second."""
    local_aws(monkeypatch, tmp_path, AWS_ENDPOINT_URL=url, AWS_MAX_ATTEMPTS="2", AWS_RETRY_MODE="standard")
