"""A stand-in for ``python -m vllm.entrypoints.openai.api_server`` (no GPU here): it takes the same flags
the backend passes, and like vLLM started with an API key (``VLLM_API_KEY``) it refuses every /v1 request
without ``Authorization: Bearer <key>`` (vLLM's AuthenticationMiddleware guards every path under /v1,
/v1/load_lora_adapter included). The real launch is tests/serving/test_upstream_backends.py's GPU test."""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def main(argv: list[str]) -> None:
    if argv[:2] == ["-m", "vllm.entrypoints.openai.api_server"]:
        argv = argv[2:]
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--served-model-name", required=True)
    args, _ = parser.parse_known_args(argv)
    key = os.environ.get("VLLM_API_KEY")
    app = FastAPI()
    loaded: dict[str, str] = {}

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if key and request.url.path.startswith("/v1") and request.headers.get("authorization") != f"Bearer {key}":
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        return await call_next(request)

    @app.get("/health")
    async def health():
        return {}

    @app.get("/v1/models")
    async def models():
        return {"data": [{"id": args.served_model_name, "parent": None, "max_model_len": 2048},
                         *({"id": n, "parent": args.served_model_name, "root": p} for n, p in loaded.items())]}

    @app.post("/v1/load_lora_adapter")
    async def load(request: Request):
        body = await request.json()
        loaded[body["lora_name"]] = body["lora_path"]
        return "Success"

    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
