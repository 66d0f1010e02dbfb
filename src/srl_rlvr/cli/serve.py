"""``srl-rlvr serve``: an OpenAI-compatible server with LoRA hot-swap (see docs/serving.md)."""

from __future__ import annotations

import click


@click.command("serve")
@click.option("--model", "model", default=None, help="'smollm2-135m', a model or LoRA folder, or a HF id "
              "(default: 'model' in --config).")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="serve.yaml with keys, limits, backend settings (see configs/serve.yaml).")
@click.option("--host", default=None, help="Bind address (default 127.0.0.1; anything else needs API keys).")
@click.option("--port", default=None, type=int, help="Port (default 8000).")
@click.option("--backend", default=None, help="hf (default), vllm or openai.")
@click.option("--served-model-name", default=None, help="Name clients put in 'model' (default: --model).")
@click.option("--lora", "loras", multiple=True, metavar="NAME=PATH", help="Load this LoRA adapter at start (repeatable).")
def serve_command(model: str | None, config_path: str | None, host: str | None, port: int | None,
                  backend: str | None, served_model_name: str | None, loras: tuple[str, ...]) -> None:
    """Serve a model (and LoRA adapters) over the OpenAI API.

    \b
    Example:
      srl-rlvr serve --model smollm2-135m --port 8000
      curl localhost:8000/v1/chat/completions -H 'Content-Type: application/json' \\
        -d '{"model": "smollm2-135m", "messages": [{"role": "user", "content": "What is 7*6?"}]}'
    """
    import logging

    import uvicorn

    from srl_rlvr.errors import UserInputError
    from srl_rlvr.serving.app import create_app
    from srl_rlvr.serving.backends import build_backend
    from srl_rlvr.serving.settings import check_bind_allowed, load_settings

    adapters = {}
    for item in loras:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserInputError(f"--lora {item!r}: expected NAME=PATH")
        adapters[name] = path
    settings = load_settings(config_path, model=model, host=host, port=port, backend=backend,
                             served_model_name=served_model_name)
    if adapters:
        settings = settings.model_copy(update={"lora_adapters": {**settings.lora_adapters, **adapters}})
    notice = check_bind_allowed(settings)
    backend_obj = build_backend(settings)
    if backend_obj.renders_prompts:  # a bad --model is a one-line error now, not a traceback at startup
        from srl_rlvr.models import resolve_model

        resolve_model(settings.model)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = create_app(settings, backend_obj)
    click.echo(f"serving '{settings.base_name}' ({settings.backend} backend) on "
               f"http://{settings.host}:{settings.port}/v1 — {notice}", err=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
