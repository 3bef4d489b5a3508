"""The HTTP app: `/ping`, `/health`, `/predict`, `/invocations`, the page at `/` and offline docs at `/docs`.

Every answer is JSON (the page and the docs aside); every refusal is `{"error": "one sentence"}` with a 4xx
status (5xx only for the server's own failures: a time limit, too many requests, the model failing), never a
traceback. `/predict` answers exactly what `meldctl predict --json` prints for the same clip and text.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from meldctl import __version__
from meldctl.errors import MeldError
from meldctl.serving.batcher import Batcher, ModelError
from meldctl.serving.uploads import (
    ClipRequest,
    FetchS3,
    InvocationRequest,
    Limits,
    RequestError,
    check_length,
    content_type,
    read_json,
    read_multipart,
    read_urlencoded,
)

TOP_K = 3
"""Emotions listed in `top_emotions`: what `meldctl predict --json` shows by default."""
TEMP_PREFIX = "meldctl-serve-"
"""Each request's temporary folder is `$TMPDIR/meldctl-serve-*`, removed before the answer is sent."""
ROUTES = "GET /, /ping, /health, /docs, /openapi.json and POST /predict, /invocations"
log = logging.getLogger("meldctl.serve")


@dataclass(frozen=True)
class ServeOptions:
    """How the server treats requests.

    Attributes:
        max_upload_mb: The largest clip accepted (413 above it).
        max_batch: The most requests in one forward; None: 8 on a GPU, 1 on the CPU (where a batch of R3D-18
            clips costs more than the same clips one by one, see docs/benchmarks.md).
        max_wait_ms: How long a decoded request may wait for others still being decoded.
        workers: Threads decoding clips.
        timeout_s: Time limit of one request, upload included (504 after it).
        max_pending: Requests in progress at once (503 above it).
    """

    max_upload_mb: float = 100.0
    max_batch: int | None = None
    max_wait_ms: float = 5.0
    workers: int = 2
    timeout_s: float = 60.0
    max_pending: int = 64

    @property
    def limits(self) -> Limits:
        return Limits(clip_bytes=int(self.max_upload_mb * 2**20))


class ErrorBody(BaseModel):
    """What every refused request gets."""

    error: str


class PredictionBody(BaseModel):
    """One prediction, as `meldctl predict --json` prints it."""

    clip: str | None
    text: str | None
    emotion: dict[str, float]
    sentiment: dict[str, float]
    top_emotion: str
    top_sentiment: str
    top_emotions: list[tuple[str, float]]
    missing: list[str] | None = None
    warnings: list[str] | None = None


@dataclass
class _State:
    predictor: Any
    batcher: Batcher
    options: ServeOptions
    fetch_s3: FetchS3 | None
    inflight: int = 0


_FORM = {
    "type": "object",
    "properties": {
        "clip": {"type": "string", "format": "binary", "description": "The clip (any container FFmpeg reads)."},
        "text": {"type": "string", "description": "The utterance text."},
    },
}
_REFUSALS = {
    status: {"model": ErrorBody, "description": what}
    for status, what in {
        400: "A malformed request: multipart form, JSON, base64, an unknown field, an unreadable clip_s3.",
        413: "The clip is over --max-upload-mb.",
        415: "Neither multipart/form-data nor application/json.",
        422: "Input the model cannot use: not a video, no audio stream, no text for a text model.",
        503: "Too many requests in progress.",
        504: "The request ran past the time limit.",
    }.items()
}


def build_app(predictor: Any, options: ServeOptions, *, fetch_s3: FetchS3 | None = None) -> FastAPI:
    """The FastAPI app serving `predictor` (a loaded `meldctl.inference.Predictor`).

    Args:
        predictor: The model, loaded once.
        options: Limits, batching and decoding threads.
        fetch_s3: How to fetch a `clip_s3` object (None: refuse them).
    """
    if options.max_batch is None:
        options = replace(options, max_batch=8 if predictor.device.type == "cuda" else 1)
    assert options.max_batch is not None
    workers = max(1, options.workers)
    batcher = Batcher(predictor, max_batch=options.max_batch, max_wait_s=options.max_wait_ms / 1000, workers=workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="meldctl serve",
        version=__version__,
        summary="Emotion and sentiment of an utterance (clip and text) from a meldctl checkpoint.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's docs page loads Swagger UI from a CDN; /docs below works offline
        redoc_url=None,
    )
    app.state.serve = _State(predictor, batcher, options, fetch_s3)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
    _add_routes(app)
    return app


def _add_routes(app: FastAPI) -> None:
    page, docs = _static("index.html"), _static("docs.html")
    predict_body = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": _FORM}}}}
    invocation_body = {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": _FORM},
                "application/json": {"schema": InvocationRequest.model_json_schema()},
            },
        }
    }

    @app.get("/ping", summary="Health check: 200 once the model is loaded", responses={503: {"model": ErrorBody}})
    async def ping(request: Request) -> JSONResponse:
        if not _state(request).batcher.alive:
            return _error(503, "the model worker is not running")
        return JSONResponse({"status": "ok"})

    @app.get("/health", summary="The checkpoint, its modalities and labels, the device, batching so far")
    async def health(request: Request) -> JSONResponse:
        state = _state(request)
        serving = {**asdict(state.options), "inflight": state.inflight, "batches": state.batcher.stats.to_json()}
        return JSONResponse({**state.predictor.describe(), "serving": serving})

    @app.post(
        "/predict",
        summary="Predict from a multipart form: clip (file) and text",
        description="Answers exactly what `meldctl predict CLIP --text TEXT --json` prints; `clip` is the "
        "uploaded file's name. A text-only checkpoint needs no clip.",
        openapi_extra=predict_body,
        responses={200: {"model": PredictionBody}, **_REFUSALS},
    )
    async def predict(request: Request) -> JSONResponse:
        return await _answer(request, _read_form)

    @app.post(
        "/invocations",
        summary="SageMaker's inference route: the multipart form, or JSON with clip_b64 or clip_s3",
        description='JSON: `{"text": "...", "clip_b64": "<base64>", "clip_name": "x.mp4"}` or '
        '`{"text": "...", "clip_s3": "s3://bucket/key.mp4"}` (fetched by the server, for large clips).',
        openapi_extra=invocation_body,
        responses={200: {"model": PredictionBody}, **_REFUSALS},
    )
    async def invocations(request: Request) -> JSONResponse:
        return await _answer(request, _read_invocation)

    @app.get("/", response_class=HTMLResponse, summary="A page to try the model in a browser")
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/docs", response_class=HTMLResponse, summary="This API's routes, rendered from /openapi.json offline")
    async def api_docs() -> HTMLResponse:
        return HTMLResponse(docs)


Reader = Callable[[Request, Path], Awaitable[ClipRequest]]


async def _answer(request: Request, read: Reader) -> JSONResponse:
    """Read the request into a temporary folder, predict, remove the folder, answer; within the time limit."""
    state = _state(request)
    if state.inflight >= state.options.max_pending:
        return _error(503, f"the server is busy with {state.inflight} requests; retry shortly", retry_after=1)
    state.inflight += 1
    clip: ClipRequest | None = None
    try:
        async with asyncio.timeout(state.options.timeout_s):
            with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX, ignore_cleanup_errors=True) as folder:
                clip = await read(request, Path(folder))
                prediction = await state.batcher.predict(clip.clip, clip.text, name=clip.name)
    except TimeoutError:
        return _error(504, f"the request took longer than the server's limit of {state.options.timeout_s:g} s")
    except RequestError as exc:
        return _error(exc.status, exc.message)
    except ClientDisconnect:
        return _error(400, "the client disconnected before the request body was complete")
    except ModelError as exc:
        return _error(500, f"the model failed: {exc}")
    except MeldError as exc:
        return _error(422, _without_paths(exc.message, clip))
    finally:
        state.inflight -= 1
    return JSONResponse(prediction.to_json(TOP_K))


async def _read_form(request: Request, folder: Path) -> ClipRequest:
    kind, options = content_type(request.headers)
    if kind == "application/x-www-form-urlencoded":
        return await read_urlencoded(request.stream(), _state(request).options.limits)
    if kind != "multipart/form-data":
        raise RequestError(
            415, f"send multipart/form-data with the fields clip and text, not {kind or 'no content type'}"
        )
    if not options.get("boundary"):
        raise RequestError(400, "the multipart/form-data content type has no boundary")
    limits = _state(request).options.limits
    check_length(request.headers, limits.form_bytes, f"the server's limit of {limits.describe()}")
    return await read_multipart(request.stream(), options["boundary"], folder, limits)


async def _read_invocation(request: Request, folder: Path) -> ClipRequest:
    kind, _ = content_type(request.headers)
    if kind == "application/json":
        return await _read_json(request, folder)
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return await _read_form(request, folder)
    kinds = "multipart/form-data (clip, text) or application/json (text, clip_b64 or clip_s3)"
    raise RequestError(415, f"send {kinds}, not {kind or 'no content type'}")


async def _read_json(request: Request, folder: Path) -> ClipRequest:
    state = _state(request)
    limits = state.options.limits
    check_length(request.headers, limits.json_bytes, f"the server's limit for a {limits.describe()} clip")
    return await read_json(request.stream(), folder, limits, state.fetch_s3)


def _without_paths(message: str, clip: ClipRequest | None) -> str:
    """Name the clip as the client did, not by its temporary path on this server."""
    if clip is not None and clip.clip is not None:
        return message.replace(str(clip.clip), clip.name or "the clip")
    return message


def _state(request: Request) -> _State:
    return request.app.state.serve


def _error(status: int, message: str, *, retry_after: int | None = None, headers: dict | None = None) -> JSONResponse:
    extra = dict(headers or {})
    if retry_after is not None:
        extra["Retry-After"] = str(retry_after)
    return JSONResponse({"error": message}, status_code=status, headers=extra or None)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 404:
        return _error(404, f"no route {where}; the routes are {ROUTES}")
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return _error(405, f"{where} is not allowed; {request.url.path} takes {allowed}", headers=exc.headers)
    return _error(exc.status_code, str(exc.detail), headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(part) for part in first.get("loc", ())) or "request"
    return _error(422, f"{where}: {first.get('msg')}")


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")


def _static(name: str) -> str:
    return (resources.files("meldctl.serving") / "static" / name).read_text(encoding="utf-8")
