"""Shared route dependencies: bearer API keys with a scope (``user`` or ``admin``), the app's state.

Keys come from serve.yaml ``api_keys`` and ``SRL_RLVR_API_KEYS`` (``key:scope,...``). With no keys the
server is open, which :func:`srl_rlvr.serving.settings.check_bind_allowed` permits on loopback only.
"""

from __future__ import annotations

import hmac

from fastapi import Depends, Request

from srl_rlvr.serving.catalog import ModelCatalog
from srl_rlvr.serving.errors import APIError
from srl_rlvr.serving.metrics import ServingMetrics
from srl_rlvr.serving.settings import ServeSettings

_SCOPE_RANK = {"user": 0, "admin": 1}


def get_settings(request: Request) -> ServeSettings:
    return request.app.state.settings


def get_catalog(request: Request) -> ModelCatalog:
    return request.app.state.catalog


def get_metrics(request: Request) -> ServingMetrics:
    return request.app.state.metrics


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def request_api_key(request: Request, settings: ServeSettings) -> str | None:
    """The caller's key once ``require_scope`` accepted it (budgets are kept per key); None on an open server,
    where any bearer token is unchecked and so identifies nobody."""
    return _presented_key(request) if settings.api_keys else None


def _scope_of(settings: ServeSettings, presented: str) -> str | None:
    """The scope of the matching key (every key is compared, in constant time each)."""
    found = None
    given = presented.encode()
    for key in settings.api_keys:
        if hmac.compare_digest(key.key.get_secret_value().encode(), given):
            found = key.scope if found is None or _SCOPE_RANK[key.scope] > _SCOPE_RANK[found] else found
    return found


def require_scope(needed: str):
    def check(request: Request, settings: ServeSettings = Depends(get_settings)) -> str | None:
        if not settings.api_keys:
            return None  # unauthenticated loopback server
        presented = _presented_key(request)
        if presented is None:
            raise APIError(401, "Missing API key: send the header 'Authorization: Bearer <key>'.", "missing_api_key")
        scope = _scope_of(settings, presented)
        if scope is None:
            raise APIError(401, "Invalid API key.", "invalid_api_key")
        if _SCOPE_RANK[scope] < _SCOPE_RANK[needed]:
            raise APIError(403, f"This endpoint needs a key with scope '{needed}'; the key given has scope '{scope}'.",
                           "insufficient_scope")
        return scope

    return check


require_user = require_scope("user")
require_admin = require_scope("admin")
