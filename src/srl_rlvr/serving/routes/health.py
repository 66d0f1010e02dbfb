"""``GET /health`` (liveness, no key needed) and ``GET /metrics`` (Prometheus text, vLLM metric names)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from srl_rlvr.serving.deps import get_metrics
from srl_rlvr.serving.metrics import ServingMetrics

router = APIRouter()


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics")
async def metrics(collector: ServingMetrics = Depends(get_metrics)) -> Response:
    content, content_type = collector.exposition()
    return Response(content=content, media_type=content_type)
