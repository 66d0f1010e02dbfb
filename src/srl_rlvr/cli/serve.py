"""``srl-rlvr serve``: an OpenAI-compatible server with LoRA hot-swap (see docs/serving.md)."""

from __future__ import annotations

import click


@click.command("serve")
@click.option("--model", "model", default=None, help="'smollm2-135m', a model or LoRA folder, a HF id, or "
              "models:/NAME@ALIAS from the model registry, followed as the alias moves "
              "(default: 'model' in --config).")
@click.option("--registry", "registry_uri", default=None, metavar="URI",
              help="Model registry for models:/ names (default: $SRL_RLVR_REGISTRY, else the cache's SQLite one).")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help="serve.yaml with keys, limits, backend settings (see configs/serve.yaml).")
@click.option("--host", default=None, help="Bind address (default 127.0.0.1; anything else needs API keys).")
@click.option("--port", default=None, type=int, help="Port (default 8000).")
@click.option("--backend", default=None, help="hf (default), vllm or openai.")
@click.option("--served-model-name", default=None, help="Name clients put in 'model' (default: --model).")
@click.option("--lora", "loras", multiple=True, metavar="NAME=PATH",
              help="Load this LoRA adapter at start (repeatable).")
@click.option("--route-config", default=None, type=click.Path(dir_okay=False),
              help="Route config (e.g. configs/route-cpu.yaml): also serve router-<name>-<threshold> and "
              "cascade-<name> (docs/serving.md, 'Serving integration').")
@click.option("--predictor", default=None, type=click.Path(dir_okay=False),
              help="The router's predictor.json from `srl-rlvr route eval` (default: the tiers' quality priors).")
@click.option("--escalation-log", default=None, type=click.Path(dir_okay=False),
              help="JSONL file the cascade appends its escalations to (trajectory rows for distillation).")
def serve_command(model: str | None, registry_uri: str | None, config_path: str | None, host: str | None,
                  port: int | None,
                  backend: str | None, served_model_name: str | None, loras: tuple[str, ...],
                  route_config: str | None, predictor: str | None, escalation_log: str | None) -> None:
    """Serve a model (and LoRA adapters) over the OpenAI API.

    \b
    Example:
      srl-rlvr serve --model smollm2-135m --port 8000
      srl-rlvr serve --model models:/demo-math@champion        # follows the registry alias
      srl-rlvr serve --model smollm2-135m --route-config configs/route-cpu.yaml \\
        --predictor out/route_eval/predictor.json --escalation-log out/escalations.jsonl
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
    if registry_uri:
        settings = settings.model_copy(update={"registry": settings.registry.model_copy(update={"uri": registry_uri})})
    from srl_rlvr.serving.registry_alias import resolve_settings

    settings, registry_ref = resolve_settings(settings)  # models:/N@ALIAS -> the version's folder
    routing = {k: v for k, v in (("config", route_config), ("predictor", predictor),
                                 ("escalation_log", escalation_log)) if v is not None}
    if routing:
        settings = settings.model_copy(update={"routing": settings.routing.model_copy(update=routing)})
    if (settings.routing.predictor or settings.routing.escalation_log) and not settings.routing.config:
        raise UserInputError("--predictor and --escalation-log need --route-config (or routing.config in serve.yaml)")
    notice = check_bind_allowed(settings)
    backend_obj = build_backend(settings)
    if backend_obj.renders_prompts:  # a bad --model is a one-line error now, not a traceback at startup
        from srl_rlvr.models import resolve_model

        resolve_model(settings.model)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = create_app(settings, backend_obj, registry_ref=registry_ref)
    click.echo(f"serving '{settings.base_name}' ({settings.backend} backend) on "
               f"http://{settings.host}:{settings.port}/v1 — {notice}", err=True)
    if app.state.routing is not None:
        routed = app.state.routing
        click.echo(f"routed names: {routed.router.model} (any router-{routed.router.name}-<threshold>), "
                   f"{routed.cascade.name}; tiers: {', '.join(t.name for t in routed.router.tiers)}", err=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info",
                timeout_keep_alive=settings.limits.keep_alive_s)
