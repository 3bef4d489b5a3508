"""Run the app: claim the address, load the checkpoint once, then serve with uvicorn until stopped."""

from __future__ import annotations

import copy
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meldctl.errors import MeldError
from meldctl.serving.app import build_app
from meldctl.serving.s3access import FetchS3
from meldctl.settings import ServeSettings


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
    host: str,
    port: int,
    settings: ServeSettings,
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
        predictor = Predictor.from_path(checkpoint, settings.device)
        app = build_app(predictor, settings, fetch_s3=fetch_s3)
        bound_port = sock.getsockname()[1]
        if on_ready is not None:
            url = f"http://{_url_host(host)}:{bound_port}"
            on_ready(Listening(host, bound_port, url, predictor.describe()))
        uvicorn.Server(uvicorn_config(app, settings)).run(sockets=[sock])
    finally:
        sock.close()


def uvicorn_config(app: Any, settings: ServeSettings, **extra: Any) -> Any:
    """uvicorn's configuration for `app`: our logging, and HTTP/1.1 that bounds the header phase."""
    import uvicorn

    return uvicorn.Config(
        app,
        log_config=log_config(),
        timeout_graceful_shutdown=int(settings.timeout_s),
        http=header_timeout_protocol(settings.header_timeout_s),
        **extra,
    )


def header_timeout_protocol(seconds: float) -> type:
    """uvicorn's h11 protocol, closing a connection whose request headers have not all arrived `seconds` after
    it opened (or after its previous answer).

    The request time limit (`--timeout`) starts once the headers are complete, and uvicorn's own keep-alive
    timer stops at the first byte of the next request, so without this a client that sends half a header line
    holds a connection, and its memory, forever. A connection that sent part of a request gets a 408 with the
    usual JSON error; an idle one is closed.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        _header_round = 0

        def connection_made(self, transport: Any) -> None:  # noqa: ANN401 - asyncio's transport
            super().connection_made(transport)
            self._arm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_timer()

        def _arm_header_timer(self) -> None:
            self._header_round += 1
            self.loop.call_later(seconds, self._headers_overdue, self._header_round)

        def _headers_overdue(self, round_: int) -> None:
            if round_ != self._header_round or self.transport.is_closing():
                return
            if self.conn.their_state is not h11.IDLE or (self.cycle is not None and not self.cycle.response_complete):
                return  # the request's headers arrived: the request time limit governs from here
            if self.conn.trailing_data[0]:
                body = b'{"error": "the request headers did not arrive within %g s"}' % seconds
                head = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                self.transport.write(head + b"content-length: %d\r\n\r\n" % len(body) + body)
            self.transport.close()

    return HeaderTimeoutProtocol


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
