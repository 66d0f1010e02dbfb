"""The OpenAI-compatible FastAPI app: ``create_app(settings, backend)``.

    srl-rlvr serve --model smollm2-135m                      # http://127.0.0.1:8000/v1

Endpoints: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``, ``/v1/load_lora_adapter``,
``/v1/unload_lora_adapter``, ``/health``, ``/metrics``; with ``routing.config`` also the router and cascade
model names (``routed_models.py``). Every error, including malformed JSON and wrong
types, is an OpenAI-style JSON body ``{"error": {...}}`` with a 4xx status and the reason.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from srl_rlvr.serving.backends import Backend, build_backend
from srl_rlvr.serving.body_limits import BodyLimits
from srl_rlvr.serving.catalog import ModelCatalog
from srl_rlvr.serving.errors import APIError, error_body
from srl_rlvr.serving.metrics import ServingMetrics, route_label
from srl_rlvr.serving.routes import adapters, chat, completions, health, models
from srl_rlvr.serving.settings import LOOPBACK_HOSTS, ServeSettings, has_admin_key, host_of, is_loopback

log = logging.getLogger("srl_rlvr.serving")


class RequestGate:
    """ASGI middleware: stamps each request's arrival time (for latency metrics) and checks the Host header on a
    loopback bind (DNS rebinding: a web page whose name resolves to 127.0.0.1 must not reach the server). The
    body's size and time limits are :class:`~srl_rlvr.serving.body_limits.BodyLimits`, inside this one."""

    def __init__(self, app: Any, allowed_hosts: set[str] | None = None):
        self.app, self.allowed_hosts = app, allowed_hosts

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["arrival"] = time.monotonic()
        if self.allowed_hosts is not None:
            headers = dict(scope.get("headers") or [])
            host = host_of(headers.get(b"host", b"").decode("latin-1"))
            if host not in self.allowed_hosts:
                body = {"error": {"message": f"Host {host or '(none)'!r} is not served here: this server is bound to "
                                             "loopback and answers only localhost, 127.0.0.1 and [::1] (add names "
                                             "to allowed_hosts in serve.yaml)", "type": "invalid_request_error",
                                  "param": None, "code": "invalid_host"}}
                await JSONResponse(body, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ResponseCounter:
    """ASGI middleware: counts every HTTP response by route and status code (``srl_rlvr_serving_http_responses``), the
    error-ratio alert's input. Errors raised before a response starts count as 500; a request left unanswered
    because its client went away first (mid-body) counts as 499, nginx's "client closed request"."""

    def __init__(self, app: Any, metrics: ServingMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: list[int] = []
        raised = True

        async def counted_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, counted_send)
            raised = False
        finally:
            code = str(status[0] if status else 500 if raised else 499)
            self.metrics.http_responses.labels(route_label(scope.get("path", "")), code).inc()


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        return f"The request body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}", None
    parts = []
    for err in errors[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg')}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
    return "; ".join(parts) + more, param


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return JSONResponse(error_body(400, message, "invalid_request", param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return JSONResponse(error_body(exc.status_code, message), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse(error_body(500, f"internal error: {type(exc).__name__}"), status_code=500)


def create_app(settings: ServeSettings, backend: Backend | None = None, registry_ref: Any = None) -> FastAPI:
    """The app for ``settings``; ``backend`` defaults to the one ``settings.backend`` names. The backend is
    started (model loaded, adapters in ``lora_adapters`` loaded) when the app starts, and closed with it.

    A ``models:/N@ALIAS`` model is resolved through the registry and followed as the alias moves
    (``serving/registry_alias.py``); ``registry_ref`` is that resolution when the caller already did it."""
    from srl_rlvr.serving.registry_alias import SCHEME, AliasWatcher, resolve_settings

    if settings.model.startswith(SCHEME) or any(p.startswith(SCHEME) for p in settings.lora_adapters.values()):
        settings, registry_ref = resolve_settings(settings)
    catalog = ModelCatalog(settings, [backend if backend is not None else build_backend(settings)])
    if registry_ref is not None:
        catalog.backends[0].registry = registry_ref.card()
    watcher = AliasWatcher(settings, catalog, registry_ref) if registry_ref is not None else None
    metrics = ServingMetrics(catalog.load_snapshot)
    routing = None
    if settings.routing.config:  # router-<name>-<threshold> and cascade-<name> as model names
        from srl_rlvr.serving.routed_models import RoutingBridge

        routing = RoutingBridge.from_settings(settings, catalog, metrics)
        catalog.add_virtual(routing)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await catalog.start()
        if watcher is not None:
            watcher.start()
        try:
            yield
        finally:
            if watcher is not None:
                await watcher.stop()
            if routing is not None:
                await routing.close()
            await catalog.close()

    app = FastAPI(title="srl-rlvr", summary="OpenAI-compatible serving with LoRA hot-swap", lifespan=lifespan)
    app.state.settings, app.state.catalog, app.state.metrics = settings, catalog, metrics
    app.state.routing = routing
    app.state.registry_watcher = watcher
    _install_error_handlers(app)
    for module in (chat, completions, models, health):
        app.include_router(module.router)
    if has_admin_key(settings):  # a keyless server would give every local process admin: no adapter endpoints
        app.include_router(adapters.router)
    loopback_hosts = ({*LOOPBACK_HOSTS, *(h.lower() for h in settings.allowed_hosts)}
                      if is_loopback(settings.host) else None)
    # the last added is the outermost: ResponseCounter (sees every response) > RequestGate > BodyLimits > routes
    app.add_middleware(BodyLimits, max_body_bytes=settings.limits.max_body_bytes,
                       body_timeout_s=settings.limits.body_timeout_s)
    app.add_middleware(RequestGate, allowed_hosts=loopback_hosts)
    app.add_middleware(ResponseCounter, metrics=metrics)
    return app
