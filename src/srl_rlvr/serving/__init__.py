"""OpenAI-compatible serving with vLLM-style LoRA hot-swap and the SRL think split (see docs/serving.md).

* ``app.create_app(settings, backend)``: the FastAPI app; ``settings.load_settings``: serve.yaml.
* ``backends``: ``hf`` (batched transformers + PEFT), ``vllm`` (launch/proxy), ``openai`` (upstream).
* ``catalog``: model name → backend + adapter (the hook for virtual names such as router models).
* ``adapter``: the ``<think>`` split into ``reasoning_content`` / ``content``.
"""
