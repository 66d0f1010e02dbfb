"""LoRA hot-swap in vLLM's API shape (admin scope): load and unload adapters while serving."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from srl_rlvr.serving.catalog import ModelCatalog
from srl_rlvr.serving.deps import get_catalog, require_admin
from srl_rlvr.serving.schemas import LoadLoraAdapterRequest, UnloadLoraAdapterRequest

router = APIRouter()


@router.post("/v1/load_lora_adapter", dependencies=[Depends(require_admin)], response_class=PlainTextResponse)
async def load_lora_adapter(body: LoadLoraAdapterRequest, catalog: ModelCatalog = Depends(get_catalog)) -> str:
    await catalog.load_adapter(body.lora_name, body.lora_path)
    return f"Success: LoRA adapter '{body.lora_name}' added successfully."


@router.post("/v1/unload_lora_adapter", dependencies=[Depends(require_admin)], response_class=PlainTextResponse)
async def unload_lora_adapter(body: UnloadLoraAdapterRequest, catalog: ModelCatalog = Depends(get_catalog)) -> str:
    await catalog.unload_adapter(body.lora_name)
    return f"Success: LoRA adapter '{body.lora_name}' removed successfully."
