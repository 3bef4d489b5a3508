"""The HTTP app: `/ping`, `/health`, `/predict`, `/analyze`, `/invocations`, a page at `/`, offline docs at `/docs`.

Every answer is JSON (the page and the docs aside); every refusal is `{"error": "one sentence"}` with a 4xx
status (5xx only for the server's own failures: a time limit, too many requests, the model failing), never a
traceback. `/predict` answers what `meldctl predict --json` prints for the same clip and text, `/analyze` what
`meldctl analyze --json` prints for the same video and subtitles.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
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
from meldctl.serving.analyze import (
    AnalyzeRequest,
    VideoLimits,
    VideoRequest,
    analyze_video,
    asks_for_analysis,
    scrub,
    video_from_form,
    video_from_json,
)
from meldctl.serving.batcher import Batcher, ModelError
from meldctl.serving.bodies import ErrorBody, PredictAnswer, TimelineBody
from meldctl.serving.dialogue import predict_dialogue, predict_in_context
from meldctl.serving.forms import Form, FormSpec, read_form
from meldctl.serving.s3access import FetchS3, S3Access
from meldctl.serving.uploads import (
    ClipRequest,
    DialogueRequest,
    InvocationRequest,
    Limits,
    RequestError,
    check_length,
    clip_from_json,
    clip_request,
    content_type,
    json_targets,
    read_json_body,
    read_urlencoded,
)
from meldctl.settings import ServeSettings

TOP_K = 3
"""Emotions listed in `top_emotions`: what `meldctl predict --json` shows by default."""
TEMP_PREFIX = "meldctl-serve-"
"""Each request's temporary folder is `$TMPDIR/meldctl-serve-*`, removed before the answer is sent."""
ROUTES = "GET /, /ping, /health, /docs, /openapi.json and POST /predict, /analyze, /invocations"
log = logging.getLogger("meldctl.serve")


def resolved(settings: ServeSettings, device_type: str, cpus: int) -> ServeSettings:
    """`settings` with the values left to the machine filled in: the batch size (8 on a GPU, 1 on the CPU, where
    a batch of R3D-18 clips costs more than the same clips one by one, see docs/benchmarks.md) and the decoding
    threads (one per core, 2 to 8)."""
    update: dict[str, Any] = {}
    if settings.max_batch is None:
        update["max_batch"] = 8 if device_type == "cuda" else 1
    if not settings.workers:
        update["workers"] = min(8, max(2, cpus))
    return settings.model_copy(update=update)


@dataclass
class _State:
    predictor: Any
    batcher: Batcher
    settings: ServeSettings
    s3: S3Access
    inflight: int = 0

    @property
    def limits(self) -> Limits:
        """Each clip within --max-upload-mb; a dialogue's clips together within --max-video-mb."""
        video = int(self.settings.max_video_mb * 2**20)
        return Limits(clip_bytes=int(self.settings.max_upload_mb * 2**20), dialogue_bytes=video)

    @property
    def video_limits(self) -> VideoLimits:
        return VideoLimits(int(self.settings.max_video_mb * 2**20), self.settings.max_video_minutes)


def _schema(*properties: tuple[str, str, bool]) -> dict[str, Any]:
    """A multipart form's schema from (field, description, is a file)."""
    return {
        "type": "object",
        "properties": {
            name: {"type": "string", "description": what, **({"format": "binary"} if file else {})}
            for name, what, file in properties
        },
    }


_FORM = _schema(
    ("clip", "The clip (any container FFmpeg reads).", True),
    ("text", "The utterance text.", False),
    ("context", 'What was said before it, oldest first: JSON [{"speaker": "...", "text": "..."}].', False),
    ("no_context", "true: classify it alone, even with a context checkpoint.", False),
)
_VIDEO_FORM = _schema(
    ("video", "The video (any container FFmpeg reads).", True),
    ("subtitles", "Its subtitles: an SRT, WebVTT or ASS file.", True),
    ("segment", "auto, subtitles, asr or vad.", False),
)
_REFUSALS = {
    status: {"model": ErrorBody, "description": what}
    for status, what in {
        400: "A malformed request: multipart form, JSON, base64, an unknown field, an unreadable S3 object.",
        403: "An S3 object outside the prefixes the server may read (--allow-s3).",
        413: "A clip over --max-upload-mb, a video (or a dialogue's clips) over --max-video-mb, texts over "
        "64 KiB together, more than 256 rows of dialogue or lines of context.",
        415: "Neither multipart/form-data nor application/json.",
        422: "Input the model cannot use: not a video, no audio stream, no text for a text model, too long.",
        503: "Too many requests in progress.",
        504: "The request ran past the time limit.",
    }.items()
}


def build_app(predictor: Any, settings: ServeSettings, *, fetch_s3: FetchS3 | None = None) -> FastAPI:
    """The FastAPI app serving `predictor` (a loaded `meldctl.inference.Predictor`).

    Args:
        predictor: The model, loaded once.
        settings: Limits, batching, decoding threads and the S3 prefixes requests may name.
        fetch_s3: How to fetch an S3 object under those prefixes (None: refuse them).
    """
    import os

    settings = resolved(settings, predictor.device.type, os.cpu_count() or 1)
    assert settings.max_batch is not None
    batcher = Batcher(
        predictor, max_batch=settings.max_batch, max_wait_s=settings.batch_wait_ms / 1000, workers=settings.workers
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="meldctl serve",
        version=__version__,
        summary="Emotion and sentiment of an utterance (clip and text) or a whole video, from a meldctl checkpoint.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's docs page loads Swagger UI from a CDN; /docs below works offline
        redoc_url=None,
    )
    app.state.serve = _State(predictor, batcher, settings, S3Access(tuple(settings.allow_s3), fetch_s3))
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
    _add_routes(app)
    return app


def _body(form: dict[str, Any], json_model: type[BaseModel] | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"multipart/form-data": {"schema": form}}
    if json_model is not None:
        content["application/json"] = {"schema": _json_schema(json_model)}
    return {"requestBody": {"required": True, "content": content}}


def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema with its nested models written in place: the operation's schema sits deep inside
    /openapi.json, where pydantic's `#/$defs/...` references would point nowhere."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    return inline(schema)


def _add_routes(app: FastAPI) -> None:
    page, docs = _static("index.html"), _static("docs.html")
    invocation_form = {"oneOf": [_FORM, _VIDEO_FORM]}
    invocation_body = _body(invocation_form)
    invocation_json = {"oneOf": [_json_schema(InvocationRequest), _json_schema(AnalyzeRequest)]}
    invocation_body["requestBody"]["content"]["application/json"] = {"schema": invocation_json}

    @app.get("/ping", summary="Health check: 200 once the model is loaded", responses={503: {"model": ErrorBody}})
    async def ping(request: Request) -> JSONResponse:
        if not _state(request).batcher.alive:
            return _error(503, "the model worker is not running")
        return JSONResponse({"status": "ok"})

    @app.get("/health", summary="The checkpoint, its modalities and labels, the device, batching so far")
    async def health(request: Request) -> JSONResponse:
        state = _state(request)
        config = state.predictor.model.config
        context = {"past": config.context_past, "future": config.context_future, "speakers": config.context_speakers}
        serving = {
            **state.settings.model_dump(mode="json"),
            "inflight": state.inflight,
            "batches": state.batcher.stats.to_json(),
        }
        return JSONResponse({**state.predictor.describe(), "context": context, "serving": serving})

    posts = (
        ("/predict", _predict_request, _body(_FORM, InvocationRequest), PredictAnswer),
        ("/analyze", _analyze_request, _body(_VIDEO_FORM, AnalyzeRequest), TimelineBody),
        ("/invocations", _invocation, invocation_body, PredictAnswer | TimelineBody),
    )
    for path, work, body, answer in posts:
        _post(app, path, work, body, answer)

    @app.get("/", response_class=HTMLResponse, summary="A page to try the model in a browser")
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/docs", response_class=HTMLResponse, summary="This API's routes, rendered from /openapi.json offline")
    async def api_docs() -> HTMLResponse:
        return HTMLResponse(docs)


Work = Callable[[Request, Path], Awaitable[dict[str, Any] | list[dict[str, Any]]]]

_POST_DOCS = {
    "/predict": (
        "Predict from a multipart form (clip, text, context) or JSON (text, clip_b64 or clip_s3, context; "
        "or a whole dialogue)",
        "Answers what `meldctl predict CLIP --text TEXT --json` prints; `clip` is the "
        "uploaded file's name. A text-only checkpoint needs no clip. `context` (oldest first) is what "
        '`--context "Speaker: line"` gives; `{"dialogue": [{"text", "speaker", "dialogue", "clip_b64"}, ...]}` '
        "is answered as `meldctl predict --dialogue FILE --json`: one object per row, in order. "
        "`no_context: true` classifies every utterance alone.",
    ),
    "/analyze": (
        "Analyse a whole video: multipart (video, subtitles, segment) or JSON (video_s3 or video_b64)",
        "Answers what `meldctl analyze VIDEO --json` prints (`video` is the uploaded file's name). "
        'JSON: `{"video_s3": "s3://bucket/key.mp4", "subtitles_text": "...", "segment": "auto"}`; the seed '
        "endpoint's `video_path` is taken as `video_s3`. Long videos belong to an async endpoint.",
    ),
    "/invocations": (
        "SageMaker's inference route: /predict's form or JSON with clip_b64 or clip_s3; "
        "a body with video_s3, video_b64 or video_path is analysed as /analyze does",
        'JSON: `{"text": "...", "clip_b64": "<base64>", "clip_name": "x.mp4"}`, '
        '`{"text": "...", "clip_s3": "s3://bucket/key.mp4"}` (fetched by the server, for large clips), '
        '`{"text": "Okay.", "context": [{"speaker": "Rachel", "text": "I got the job!"}]}`, '
        '`{"dialogue": [{"speaker": "Rachel", "text": "..."}, ...]}` (as /predict), or '
        '`{"video_path": "s3://bucket/episode.mp4"}` (a whole video).',
    ),
}
"""Each POST route's summary and description, as /docs shows them."""


def _post(app: FastAPI, path: str, work: Work, body: dict[str, Any], answer: Any) -> None:
    """Add the POST route `path`, which answers with `work` (through `_answer`); its OpenAPI entry shows the
    request `body`, the `answer` model and the refusals."""

    async def route(request: Request) -> JSONResponse:
        return await _answer(request, work)

    docs = _POST_DOCS[path]
    responses: dict[int | str, dict[str, Any]] = {200: {"model": answer}, **_REFUSALS}
    add = app.post(path, name=path[1:], summary=docs[0], description=docs[1], openapi_extra=body, responses=responses)
    add(route)


async def _answer(request: Request, work: Work) -> JSONResponse:
    """Read the request into a temporary folder, do the work, remove the folder, answer; within the time limit."""
    state = _state(request)
    if state.inflight >= state.settings.max_pending:
        return _error(503, f"the server is busy with {state.inflight} requests; retry shortly", retry_after=1)
    state.inflight += 1
    try:
        async with asyncio.timeout(state.settings.timeout_s):
            with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX, ignore_cleanup_errors=True) as folder:
                answer = await work(request, Path(folder))
    except TimeoutError:
        return _error(504, f"the request took longer than the server's limit of {state.settings.timeout_s:g} s")
    except RequestError as exc:
        return _error(exc.status, exc.message)
    except ClientDisconnect:
        return _error(400, "the client disconnected before the request body was complete")
    except ModelError as exc:
        return _error(500, f"the model failed: {exc}")
    finally:
        state.inflight -= 1
    return JSONResponse(answer)


async def _predict(request: Request, asked: ClipRequest | DialogueRequest) -> dict[str, Any] | list[dict[str, Any]]:
    """One clip (alone, or after its context) as one object; a dialogue as one object per row."""
    state = _state(request)
    if isinstance(asked, DialogueRequest):
        return await predict_dialogue(state.batcher, state.predictor, asked, TOP_K)
    try:
        if asked.context:
            prediction = await predict_in_context(state.batcher, state.predictor, asked)
        else:
            prediction = await state.batcher.predict(asked.clip, asked.text, name=asked.name)
    except MeldError as exc:
        raise RequestError(422, _without_paths(exc.message, asked)) from None
    return prediction.to_json(TOP_K)


async def _analyze(request: Request, video: VideoRequest) -> dict[str, Any]:
    state = _state(request)
    cancelled = threading.Event()
    try:
        return await asyncio.to_thread(
            analyze_video, video, state.predictor, state.batcher.call_blocking, state.video_limits, cancelled
        )
    except MeldError as exc:
        raise RequestError(422, scrub(exc.message, video.renames())) from None
    finally:
        cancelled.set()  # a request past its time limit stops its analysis at the next progress step


async def _predict_request(request: Request, folder: Path) -> dict[str, Any] | list[dict[str, Any]]:
    kind, _ = content_type(request.headers)
    state = _state(request)
    limits = state.limits
    if kind == "application/x-www-form-urlencoded":
        return await _predict(request, await read_urlencoded(request.stream(), limits))
    if kind not in ("multipart/form-data", "application/json"):
        kinds = "multipart/form-data (clip, text, context) or application/json (text, clip_b64, context; dialogue)"
        raise RequestError(415, f"send {kinds}, not {kind or 'no content type'}")
    if kind == "application/json":
        over = f"the JSON body is over the server's limit of {limits.json_bytes / 2**20:.0f} MB"
        check_length(request.headers, limits.json_bytes, over)
        fields, decoded = await read_json_body(
            request.stream(), folder, json_targets(folder, limits.base64), limit=limits.json_bytes, over=over,
            lists=limits.lists(folder),
        )  # fmt: skip
        return await _predict(request, await clip_from_json(fields, decoded, folder, limits, state.s3))
    return await _predict(request, clip_request(await _read_multipart(request, folder, limits.form), limits))


async def _read_multipart(request: Request, folder: Path, spec: FormSpec) -> Form:
    kind, options = content_type(request.headers)
    if kind != "multipart/form-data":
        sent = kind or "no content type"
        raise RequestError(415, f"send multipart/form-data with the fields {spec.describe()}, not {sent}")
    if not options.get("boundary"):
        raise RequestError(400, "the multipart/form-data content type has no boundary")
    check_length(request.headers, spec.total, spec.over)
    return await read_form(request.stream(), options["boundary"], folder, spec)


async def _analyze_request(request: Request, folder: Path) -> dict[str, Any]:
    kind, _ = content_type(request.headers)
    state = _state(request)
    if kind == "application/json":
        limits = state.video_limits
        targets = json_targets(folder, limits.base64)
        over = limits.video_over.replace("the video", "the JSON body", 1)
        check_length(request.headers, limits.json_bytes, over)
        fields, decoded = await read_json_body(request.stream(), folder, targets, limit=limits.json_bytes, over=over)
        return await _analyze(request, await video_from_json(fields, decoded, folder, limits, state.s3))
    if kind != "multipart/form-data":
        kinds = "multipart/form-data (video, subtitles, segment) or application/json (video_s3 or video_b64)"
        raise RequestError(415, f"send {kinds}, not {kind or 'no content type'}")
    return await _analyze(request, video_from_form(await _read_multipart(request, folder, state.video_limits.form)))


async def _invocation(request: Request, folder: Path) -> dict[str, Any] | list[dict[str, Any]]:
    """SageMaker's one route: a clip (form, `text=`, JSON) is predicted, a video (form or JSON) analysed."""
    kind, _ = content_type(request.headers)
    state = _state(request)
    limits, video_limits = state.limits, state.video_limits
    if kind == "application/json":
        targets = json_targets(folder, {**limits.base64, **video_limits.base64})
        most = max(limits.json_bytes, video_limits.json_bytes)
        over = f"the JSON body is over the server's limit of {most / 2**20:.0f} MB"
        check_length(request.headers, most, over)
        fields, decoded = await read_json_body(
            request.stream(), folder, targets, limit=most, over=over, lists=limits.lists(folder)
        )
        if asks_for_analysis(fields):
            return await _analyze(request, await video_from_json(fields, decoded, folder, video_limits, state.s3))
        return await _predict(request, await clip_from_json(fields, decoded, folder, limits, state.s3))
    if kind == "multipart/form-data":
        form = await _read_multipart(request, folder, limits.form.union(video_limits.form))
        sent = form.files.keys() | form.texts.keys()
        if sent & video_limits.form.fields.keys():  # a video and what goes with it: analyse it
            if sent & limits.form.fields.keys():
                raise RequestError(400, "send a clip and its text, or a video, not both")
            return await _analyze(request, video_from_form(form))
        return await _predict(request, clip_request(form, limits))
    if kind == "application/x-www-form-urlencoded":
        return await _predict(request, await read_urlencoded(request.stream(), limits))
    kinds = "multipart/form-data (clip, text) or application/json (text, clip_b64 or clip_s3)"
    raise RequestError(415, f"send {kinds}, not {kind or 'no content type'}")


def _without_paths(message: str, clip: ClipRequest | DialogueRequest | None) -> str:
    """Name the clip as the client did, not by its temporary path on this server."""
    if isinstance(clip, ClipRequest) and clip.clip is not None:
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
