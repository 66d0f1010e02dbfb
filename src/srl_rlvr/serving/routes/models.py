"""``GET /v1/models``: the base model and every loaded adapter (with ``parent``), plus virtual names."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from srl_rlvr.serving.catalog import ModelCatalog
from srl_rlvr.serving.deps import get_catalog, require_user

router = APIRouter()


@router.get("/v1/models", dependencies=[Depends(require_user)])
async def list_models(catalog: ModelCatalog = Depends(get_catalog)) -> dict[str, Any]:
    return {"object": "list", "data": catalog.cards()}
