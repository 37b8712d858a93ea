"""The HTTP layer of ``gag serve``: a FastAPI app over an :class:`Engine`, thin like vLLM's OpenAI server.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions`` (both streaming as
server-sent events through sse-starlette, ending with ``data: [DONE]``), ``GET /health``, ``GET /metrics``
(Prometheus) and ``POST /admin/reload``. Every failure is an OpenAI error object
``{"error": {"message", "type", "param", "code"}}`` with the right status, so OpenAI clients report it cleanly.
"""

from __future__ import annotations

import hmac
import logging
import time
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..errors import ConfigError, DomainNotFoundError, GagError, IncompatibleModuleError, InputError
from ..generation import GenerationOptions
from .engine import Engine, EngineClosedError, PromptTooLongError, QueueFullError, RequestTimeoutError, Ticket
from .metrics import ServingMetrics
from .protocol import ChatCompletionRequest, CompletionRequest, ErrorBody, ErrorResponse, ModelCard, ModelList
from .settings import ServeSettings
from .shapes import ChatShape, CompletionShape, Shape

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error answered as an OpenAI error object with ``status``."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.body, self.headers = status, ErrorBody(message=message, type=type, param=param, code=code), headers

    def response(self) -> JSONResponse:
        return JSONResponse(ErrorResponse(error=self.body).model_dump(), self.status, headers=self.headers)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"The request body is over {limit} bytes; send a shorter prompt.")


def api_error(exc: Exception) -> APIError:
    """The OpenAI-style error for anything an endpoint or the engine raised."""
    if isinstance(exc, APIError):
        return exc
    message = str(exc)
    if isinstance(exc, QueueFullError):
        return APIError(429, message, "rate_limit_error", code="queue_full",
                        headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, RequestTimeoutError):
        return APIError(504, message, "timeout_error", code="request_timeout")
    if isinstance(exc, EngineClosedError):
        return APIError(503, message, "server_error", code="unavailable")
    if isinstance(exc, DomainNotFoundError):
        return APIError(404, message, param="model", code="model_not_found")
    if isinstance(exc, IncompatibleModuleError):
        return APIError(404, message, param="model", code="model_unavailable")
    if isinstance(exc, PromptTooLongError):
        return APIError(400, message, param="messages", code="context_length_exceeded")
    if isinstance(exc, (InputError, ConfigError)):  # the question or the generation settings
        return APIError(400, message, code="invalid_value")
    if isinstance(exc, GagError):
        return APIError(500, message, "server_error", code="internal_error")
    log.error("Unexpected error while serving", exc_info=exc)
    return APIError(500, "The server failed on this request; see its log.", "server_error", code="internal_error")


class BodyLimit:
    """ASGI middleware: bodies over ``limit`` bytes get a 413 OpenAI error (declared or streamed)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.limit:
            return await _error_for(BodyTooLarge(self.limit)).response()(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge(self.limit)  # FastAPI re-raises HTTPExceptions met while reading the body
            return message

        await self.app(scope, limited, send)


def _error_for(exc: HTTPException) -> APIError:
    kinds = {401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error",
             413: "invalid_request_error"}
    codes = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
    return APIError(exc.status_code, str(exc.detail), kinds.get(exc.status_code, "invalid_request_error"),
                    code=codes.get(exc.status_code))


def _validation_error(exc: RequestValidationError) -> APIError:
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        why = (first.get("ctx") or {}).get("error", "JSON decode error")
        return APIError(400, f"The request body is not valid JSON ({why}); send a JSON object.", code="invalid_json")
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    param = ".".join(loc) or None
    return APIError(400, f"{param}: {message}" if param else message, param=loc[0] if loc else None,
                    code="invalid_value")


def _install_error_handlers(app: FastAPI, metrics: ServingMetrics) -> None:
    converters = {APIError: api_error, GagError: api_error, RequestValidationError: _validation_error,
                  HTTPException: _error_for, Exception: api_error}

    def handler(convert):
        async def reply(request: Request, exc: Exception) -> JSONResponse:
            error = convert(exc)
            if request.url.path in (ChatShape.endpoint, CompletionShape.endpoint):  # bounded label values
                metrics.refused(request.url.path, error.status)
            return error.response()

        return reply

    for kind, convert in converters.items():
        app.add_exception_handler(kind, handler(convert))


def _require_key(settings: ServeSettings, admin: bool = False):
    """A dependency: the request must carry ``Authorization: Bearer KEY`` when the server has a key."""

    async def check(request: Request) -> None:
        if settings.api_key is None:
            if admin:
                raise APIError(403, "Admin endpoints need an API key; restart the server with --api-key KEY "
                               "(or GAG_API_KEY) and send it as 'Authorization: Bearer KEY'.",
                               "permission_error", code="key_required")
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise APIError(401, "Missing or incorrect API key; send the server's key as 'Authorization: Bearer "
                           "KEY' (with the openai client: api_key=KEY).", "authentication_error",
                           code="invalid_api_key")

    return check


def _options(req, settings: ServeSettings) -> GenerationOptions:
    wanted = req.requested_max_tokens()
    if wanted is not None and wanted > settings.max_tokens_cap:
        raise APIError(400, f"max_tokens is {wanted}; this server's cap is {settings.max_tokens_cap}. Ask for fewer "
                       "tokens (or start the server with a higher --max-tokens-cap).", param="max_tokens",
                       code="invalid_value")
    return GenerationOptions(max_new_tokens=wanted or settings.default_max_tokens, temperature=req.temperature or 0.0,
                             top_p=req.top_p or 1.0, stop=req.stop_strings, seed=req.seed)


async def _respond(ticket: Ticket, shape: Shape, stream: bool, include_usage: bool, metrics: ServingMetrics):
    """The answer as one JSON object, or as server-sent events. Errors before the first event keep their status."""
    started = time.perf_counter()
    try:
        if not stream:
            route, answer = await ticket.result()
            metrics.answered(shape.endpoint, route.route, answer, time.perf_counter() - started)
            return shape.full(route, answer)
        events = ticket.events()
        _, route = await anext(events)  # routed (or refused) before any byte of the stream is sent
    except BaseException:
        ticket.abandon()
        raise

    async def sse():
        try:
            yield {"data": shape.first(route).model_dump_json()}
            async for kind, value in events:
                if kind == "text":
                    yield {"data": shape.piece(value).model_dump_json()}
                elif kind == "done":
                    yield {"data": shape.last(value).model_dump_json()}
                    if include_usage:
                        yield {"data": shape.usage(value).model_dump_json()}
                    metrics.answered(shape.endpoint, route.route, value, time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - the status is sent; report in the stream, OpenAI-style
            error = api_error(exc)
            metrics.refused(shape.endpoint, error.status, route.route)
            yield {"data": ErrorResponse(error=error.body).model_dump_json()}
        finally:
            ticket.abandon()  # a client that left mid-stream stops its generation here
        yield {"data": "[DONE]"}

    return EventSourceResponse(sse())


def _openai_routes(engine: Engine, settings: ServeSettings, metrics: ServingMetrics) -> APIRouter:
    router = APIRouter(dependencies=[Depends(_require_key(settings))])

    @router.get("/v1/models")
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(**row) for row in engine.catalog()])

    @router.post("/v1/chat/completions")
    async def chat(req: ChatCompletionRequest):
        question, history = req.question_and_history()
        ticket = engine.submit(req.model, question, history, _options(req, settings), req.stream)
        return await _respond(ticket, ChatShape(req.model), req.stream, req.include_usage, metrics)

    @router.post("/v1/completions")
    async def completions(req: CompletionRequest):
        ticket = engine.submit(req.model, req.prompt, None, _options(req, settings), req.stream)
        return await _respond(ticket, CompletionShape(req.model), req.stream, req.include_usage, metrics)

    @router.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    return router


def _ops_routes(engine: Engine, settings: ServeSettings) -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health() -> JSONResponse:
        if not engine.running:
            return JSONResponse({"status": "unavailable"}, 503)
        service = engine.service
        return JSONResponse({"status": "ok", "domains": service.domains, "unavailable": dict(service.unavailable),
                             "queue_depth": engine.queue_depth})

    @router.post("/admin/reload", dependencies=[Depends(_require_key(settings, admin=True))])
    async def reload() -> JSONResponse:
        try:
            report = await run_in_threadpool(engine.reload)
        except Exception as exc:  # noqa: BLE001 - whatever broke the build, the old service goes on
            raise APIError(500, f"Reload failed; the domains loaded before go on serving: {exc}", "server_error",
                           code="reload_failed") from exc
        for name, why in report["unavailable"].items():
            log.warning("Domain %s is unavailable: %s", name, why)
        return JSONResponse(report)

    return router


def create_app(engine: Engine, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI app over ``engine``; its lifespan starts the engine (if not yet) and closes it."""
    settings = settings or engine.settings
    metrics = ServingMetrics(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(engine.start)
        try:
            yield
        finally:
            await run_in_threadpool(engine.close)

    app = FastAPI(title="gag", summary="OpenAI-compatible server over routed GAG domains", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.metrics = engine, metrics
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    _install_error_handlers(app, metrics)
    app.include_router(_openai_routes(engine, settings, metrics))
    app.include_router(_ops_routes(engine, settings))
    return app
