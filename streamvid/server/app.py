"""The web app of ``streamvid serve``: JSON routes, a live feed (SSE) and the page at ``/``.

Routes (JSON unless said; every error is ``{"error": "...", "status": N}`` with a 4xx/5xx code):

- ``POST /ask`` — ``{"question": str, "stream": id?, "top_k": int?}``, or a multipart form with an
  ``image`` file (and optional ``stream``, ``top_k``), or a raw ``image/jpeg``/``image/png`` body →
  ``{"question", "answers": [{"stream", "stream_name", ...the answer schema of --json}]}``;
- ``GET /events?stream=&since=&limit=`` — pinned entries/exits and alert hits after id ``since``,
  the oldest ``limit`` of them (``more``: whether others follow; page on with the last id);
- ``GET /events/stream?stream=`` — Server-Sent Events: ``event`` (one event), ``frame`` (a new
  frame was ingested; at most 2/s per stream), ``status`` (the /health document);
- ``GET /memory?stream=`` — budget, bytes, position and sources of each memory;
- ``GET /frame.jpg?stream=`` — the newest frame; ``GET /thumb/{stream}/{id}.jpg`` — a thumbnail
  of the memory; ``GET /alerts/{stream}/{file}`` — an alert's thumbnail;
- ``GET /health``; ``GET /`` — the page; ``/docs`` and ``/openapi.json`` — the API.

With a token every route needs ``Authorization: Bearer TOKEN`` or the ``streamvid_token`` cookie,
which ``GET /?token=TOKEN`` sets (so the page, its fetches and its EventSource carry it).
Request bodies are limited to ``max_body`` bytes (413), questions to ``MAX_QUESTION`` characters.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from importlib import resources
from typing import Any

import cv2
import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from streamvid import __version__
from streamvid.errors import StreamvidError
from streamvid.server.hub import ALERT_FILE, Hub

log = logging.getLogger(__name__)

MAX_BODY = 8 << 20  # bytes of a request body (an uploaded image)
MAX_QUESTION = 500  # characters
MAX_TOP_K = 50
MAX_IMAGE_PIXELS = 40_000_000
KEEPALIVE = 15.0  # seconds between SSE comments when nothing happens
STATUS_EVERY = 5.0  # seconds between SSE status messages
COOKIE = "streamvid_token"


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


class _Guard:
    """Pure ASGI middleware: the bearer token and the request size limit, before any route runs."""

    def __init__(self, app, token: str | None, max_body: int) -> None:
        self.app, self.token, self.max_body = app, token, max_body

    def _authorised(self, scope) -> bool:
        if not self.token:
            return True
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        given = None
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if given is None and "cookie" in headers:
            for part in headers["cookie"].split(";"):
                k, _, v = part.strip().partition("=")
                if k == COOKIE:
                    given = v
        if given is None and scope.get("path") == "/":  # the page: /?token=... (sets the cookie)
            from urllib.parse import parse_qs

            given = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token") or [None])[0]
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if not self._authorised(scope):
            resp = _error(401, "missing or wrong token: send 'Authorization: Bearer TOKEN' "
                          "(or open the page as /?token=TOKEN)", {"WWW-Authenticate": "Bearer"})
            return await resp(scope, receive, send)
        length = None
        for k, v in scope.get("headers", []):
            if k.lower() == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    return await _error(400, "bad Content-Length")(scope, receive, send)
        if length is not None and length > self.max_body:
            return await _error(413, f"request body of {length} bytes is over the limit of "
                                f"{self.max_body} bytes")(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_body:
                    raise ApiError(413, f"request body over the limit of {self.max_body} bytes")
            return msg

        return await self.app(scope, limited, send)


def create_app(hub: Hub, *, token: str | None = None, max_body: int = MAX_BODY, min_gap: float = 1.0,
               out_dir: str | None = None) -> FastAPI:
    """The FastAPI app serving ``hub`` (see the module docstring)."""
    app = FastAPI(title="streamvid", version=__version__,
                  description="Ask questions about live streams and saved memories; follow their events.")
    static = resources.files("streamvid.server") / "static"

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return _error(e.status, e.message, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        return _error(e.status_code, str(e.detail) if e.detail else "error")

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError):
        errs = e.errors()
        where = ".".join(str(x) for x in errs[0].get("loc", ())) if errs else ""
        msg = errs[0].get("msg", "invalid request") if errs else "invalid request"
        return _error(422, f"{where}: {msg}" if where else msg)

    @app.exception_handler(StreamvidError)
    async def _streamvid_error(request: Request, e: StreamvidError):
        return _error(400, str(e))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception):
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return _error(500, f"unexpected {type(e).__name__}; see the server log")

    def streams_of(sid: int | None):
        try:
            return hub.stream(sid)
        except KeyError:
            raise ApiError(404, f"no stream {sid}; streams: {sorted(hub.streams)}") from None

    # -- the page --------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def page(request: Request, token: str | None = None):
        index = static / "index.html"
        html = index.read_text(encoding="utf-8") if index.is_file() else "<!doctype html><title>streamvid</title>"
        resp = HTMLResponse(html, headers={"Cache-Control": "no-store"})
        if token and app.state.token and hmac.compare_digest(token.encode(), app.state.token.encode()):
            resp.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return resp

    if static.is_dir():
        app.mount("/static", StaticFiles(directory=str(static)), name="static")

    # -- JSON routes -----------------------------------------------------------------------------
    @app.get("/health", summary="Server and stream status")
    def health() -> dict:
        return hub.health()

    @app.get("/memory", summary="Budget, bytes, position and sources of each memory")
    def memory(stream: int | None = Query(None, description="a stream id (default: all)")) -> dict:
        return {"streams": [hub.memory_doc(s) for s in streams_of(stream)]}

    @app.get("/events", summary="Pinned entries/exits and alert hits, oldest first")
    def events(stream: int | None = None, since: int = Query(0, ge=0), limit: int = Query(500, ge=1, le=2000)) -> dict:
        if stream is not None:
            streams_of(stream)
        events, more = hub.events_since(since, stream, limit)
        return {"events": events, "more": more, "last_id": hub.last_id}

    @app.get("/frame.jpg", summary="The newest frame (a saved memory: its newest thumbnail)",
             response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
    def frame(stream: int | None = None) -> Response:
        s = streams_of(stream if stream is not None else min(hub.streams))[0]
        data = hub.frame_jpeg(s)
        if data is None:
            raise ApiError(404, f"stream {s.id} has no frame yet")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/thumb/{stream}/{tid}.jpg", summary="A thumbnail of a memory", response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}}})
    def thumb(stream: int, tid: int) -> Response:
        s = streams_of(stream)[0]
        data = hub.thumbnail(s, tid)
        if not data:
            raise ApiError(404, f"no thumbnail {tid} in stream {stream} (it may have been evicted)")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})

    @app.get("/alerts/{stream}/{name}", summary="An alert's thumbnail", response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}}})
    def alert_thumb(stream: int, name: str):
        s = streams_of(stream)[0]
        folder = getattr(getattr(s, "alerts", None), "out_dir", None)
        if folder is None or not ALERT_FILE.match(name):
            raise ApiError(404, "no such alert thumbnail")
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise ApiError(404, "no such alert thumbnail")
        return FileResponse(path, media_type="image/jpeg")

    @app.post("/ask", summary="Ask a question (JSON) or an image (multipart 'image', or a raw image body)",
              openapi_extra={"requestBody": {"content": {
                  "application/json": {"schema": {"type": "object", "required": ["question"], "properties": {
                      "question": {"type": "string", "maxLength": MAX_QUESTION},
                      "stream": {"type": "integer"}, "top_k": {"type": "integer", "minimum": 1}}}},
                  "multipart/form-data": {"schema": {"type": "object", "properties": {
                      "image": {"type": "string", "format": "binary"}, "stream": {"type": "integer"},
                      "top_k": {"type": "integer"}}}},
                  "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                  "image/png": {"schema": {"type": "string", "format": "binary"}}}}})
    async def ask(request: Request) -> dict:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        question, image, sid, top_k = None, None, None, 5
        if ctype == "application/json":
            try:
                body = json.loads(await request.body() or b"null")
            except (ValueError, UnicodeDecodeError):
                raise ApiError(400, "the body is not valid JSON") from None
            if not isinstance(body, dict):
                raise ApiError(400, 'expected a JSON object like {"question": "who entered?"}')
            question, sid, top_k = body.get("question"), body.get("stream"), body.get("top_k", 5)
            if not isinstance(question, str):
                raise ApiError(400, '"question" must be a string')
        elif ctype == "multipart/form-data":
            try:
                form = await request.form(max_files=1, max_fields=8)
            except ApiError:
                raise
            except Exception as e:  # malformed multipart
                raise ApiError(400, f"cannot read the form: {e}") from None
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                raise ApiError(400, "the form needs an 'image' file field")
            image = await upload.read()
            sid, top_k = form.get("stream"), form.get("top_k", 5)
            question = form.get("question") or f"image {upload.filename or 'upload'}"
        elif ctype in ("image/jpeg", "image/png"):
            image = await request.body()
            sid, top_k = request.query_params.get("stream"), request.query_params.get("top_k", 5)
            question = "image upload"
        else:
            raise ApiError(415, "send JSON {\"question\": ...}, a multipart form with an 'image' file, "
                                "or an image/jpeg or image/png body")
        sid = _int(sid, "stream", allow_none=True)
        top_k = _int(top_k, "top_k")
        if not 1 <= top_k <= MAX_TOP_K:
            raise ApiError(422, f"top_k must be between 1 and {MAX_TOP_K}")
        streams = streams_of(sid)
        if image is None:
            question = " ".join(question.split())
            if not question:
                raise ApiError(422, "the question is empty")
            if len(question) > MAX_QUESTION:
                raise ApiError(422, f"the question is longer than {MAX_QUESTION} characters")
            return await asyncio.to_thread(_answer_text, hub, streams, question, top_k, min_gap)
        rgb = _decode_image(image)
        return await asyncio.to_thread(_answer_image, hub, streams, question, rgb, top_k, min_gap)

    # -- the live feed ---------------------------------------------------------------------------
    @app.get("/events/stream", summary="Server-Sent Events: event, frame, status",
             response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
    async def event_stream(request: Request, stream: int | None = None):
        if stream is not None:
            streams_of(stream)
        sub = hub.subscribe(asyncio.get_running_loop(), stream)
        if sub is None:
            raise ApiError(503, f"too many live clients (at most {hub.max_subscribers})")

        async def feed():
            try:
                yield "retry: 2000\n\n"
                yield _sse("status", hub.health())
                last_status = asyncio.get_running_loop().time()
                while True:
                    try:
                        item = await asyncio.wait_for(sub.queue.get(), timeout=min(KEEPALIVE, STATUS_EVERY))
                    except asyncio.TimeoutError:
                        item = ()
                    if item is None:  # the server is shutting down
                        return
                    if await request.is_disconnected():
                        return
                    now = asyncio.get_running_loop().time()
                    if item:
                        yield _sse(*item)
                    if now - last_status >= STATUS_EVERY:
                        last_status = now
                        yield _sse("status", hub.health())
                    elif not item:
                        yield ": keep-alive\n\n"
            finally:
                hub.unsubscribe(sub)

        return StreamingResponse(feed(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    app.state.token = token
    app.state.hub = hub
    app.add_middleware(_Guard, token=token, max_body=max_body)
    return app


def _sse(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _int(v, name: str, *, allow_none: bool = False) -> int | None:
    if v is None or v == "":
        if allow_none:
            return None
        raise ApiError(422, f"{name} is required")
    if isinstance(v, bool):
        raise ApiError(422, f"{name} must be an integer")
    try:
        return int(v)
    except (TypeError, ValueError):
        raise ApiError(422, f"{name} must be an integer, got {v!r}"[:200]) from None


def _decode_image(data: bytes) -> np.ndarray:
    if not data:
        raise ApiError(400, "the image is empty")
    arr = np.frombuffer(data, dtype=np.uint8)
    # the header's size first: refuse decompression bombs before decoding them
    bgr = cv2.imdecode(arr, cv2.IMREAD_REDUCED_COLOR_2) if len(data) > MAX_BODY // 2 else None
    bgr = cv2.imdecode(arr, cv2.IMREAD_COLOR) if bgr is None else bgr
    if bgr is None or bgr.size == 0:
        raise ApiError(400, "the image cannot be decoded (send a JPEG or PNG)")
    if bgr.shape[0] * bgr.shape[1] > MAX_IMAGE_PIXELS:
        raise ApiError(413, f"the image has more than {MAX_IMAGE_PIXELS} pixels")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _answer_text(hub: Hub, streams, question: str, top_k: int, min_gap: float) -> dict:
    from streamvid.query import answer_text

    answers = []
    for s in streams:
        enc = s.query_encoder
        with hub.lock:
            a = answer_text(s.memory, question, enc.encode_text, encoder_name=enc.name, top_k=top_k, min_gap=min_gap)
            answers.append(hub.answer_doc(s, a))
    return {"question": question, "answers": answers}


def _answer_image(hub: Hub, streams, label: str, rgb: np.ndarray, top_k: int, min_gap: float) -> dict:
    from streamvid.query import answer_image

    answers = []
    for s in streams:
        vec = s.query_encoder.encode_image(rgb)
        with hub.lock:
            a = answer_image(s.memory, label, vec, top_k=top_k, min_gap=min_gap)
            answers.append(hub.answer_doc(s, a))
    return {"question": label, "answers": answers}
