"""Run the app: claim the address, load the checkpoint once, then serve with uvicorn until stopped."""

from __future__ import annotations

import copy
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meldctl.errors import MeldError
from meldctl.serving.app import ServeOptions, build_app
from meldctl.serving.uploads import FetchS3


@dataclass(frozen=True)
class Listening:
    """What `serve` tells its caller once the model is loaded and requests are about to be accepted."""

    host: str
    port: int
    url: str
    description: dict[str, Any]


def serve(
    *,
    checkpoint: Path,
    device: str,
    host: str,
    port: int,
    options: ServeOptions,
    fetch_s3: FetchS3 | None = None,
    on_ready: Callable[[Listening], None] | None = None,
) -> None:
    """Serve `checkpoint` on `host:port` until SIGINT or SIGTERM.

    The address is claimed before the (slow) checkpoint load so that a port in use fails at once; nobody is
    let in before the model is loaded, so `/ping` never answers for a server that cannot predict yet.

    Raises:
        MeldError: the address cannot be used, or the checkpoint cannot be loaded.
    """
    import uvicorn

    from meldctl.inference import Predictor

    sock = bind(host, port)
    try:
        predictor = Predictor.from_path(checkpoint, device)
        app = build_app(predictor, options, fetch_s3=fetch_s3)
        bound_port = sock.getsockname()[1]
        if on_ready is not None:
            url = f"http://{_url_host(host)}:{bound_port}"
            on_ready(Listening(host, bound_port, url, predictor.describe()))
        config = uvicorn.Config(app, log_config=log_config(), timeout_graceful_shutdown=int(options.timeout_s))
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound (not yet listening) to `host:port`; port 0 picks a free one.

    Raises:
        MeldError: the host does not resolve or the port is taken.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise MeldError(f"cannot listen on {host}: {exc.strerror}", hint="pass --host 127.0.0.1 or 0.0.0.0") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise MeldError(f"cannot listen on {host}:{port}: {exc.strerror}", hint="pick another --port") from None
    return sock


def log_config() -> dict[str, Any]:
    """uvicorn's logging, with the access log on stderr too (stdout is for machine-readable output)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    config["loggers"]["meldctl.serve"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"  # reachable from this machine; the server also listens on every other interface
    return f"[{host}]" if ":" in host else host
