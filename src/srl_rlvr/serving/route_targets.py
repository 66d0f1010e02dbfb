"""How the server calls a route target (a tier of the router or the cascade): which serving backend runs
it, the request rendered for it, and the call itself (docs/serving.md, "Serving integration").

    srl-rlvr serve --model smollm2-135m --route-config configs/route-cpu.yaml

Each tier's backend (:data:`srl_rlvr.routing.backends.TARGET_BACKENDS`) says how it is reached:

* a tier that shares the served model (``hf``, ``vllm``) and whose ``model`` is the served model, or a LoRA
  adapter loaded on it (by name or folder): the server's own backend, so batching, the prefix cache and
  hot-swap apply, and the vLLM-named metrics count the call under that model;
* any other tier with a serving backend of its own (``hf``: an hf backend; ``openai``: an upstream client for
  serve.yaml's ``openai:`` endpoint, asking for the tier's model), started on the first request that may
  need it;
* a tier that answers in process (``demo_solver``: the SIMULATED exact solver): called in the worker thread.

Model tiers get the whole conversation, rendered by their own tokenizer (``<think>`` prefill included where
their stage manifest asks for it); an in-process tier reads the problem.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from srl_rlvr.errors import UserInputError
from srl_rlvr.prompts import with_prefill
from srl_rlvr.routing import TARGET_BACKENDS, Tier, TierCaller
from srl_rlvr.routing.backends import TargetBackend
from srl_rlvr.routing.calls import output_text, output_tokens
from srl_rlvr.routing.targets import estimate_tokens
from srl_rlvr.serving.backends import Backend, Finished, Prompt, SamplingParams, TextDelta, get_backend_factory
from srl_rlvr.serving.catalog import ModelCatalog, Target
from srl_rlvr.serving.errors import APIError
from srl_rlvr.serving.generation import chat_prompt, check_queue, metered, sampling_params
from srl_rlvr.serving.metrics import ServingMetrics
from srl_rlvr.serving.schemas import ChatCompletionRequest
from srl_rlvr.serving.settings import ServeSettings
from srl_rlvr.serving.think_format import ThinkFormat, resolve_think_format

log = logging.getLogger("srl_rlvr.serving")

@dataclass(frozen=True)
class TierOutput:
    """One completion of a tier call: ``.text`` and ``.num_tokens`` are what the router prices and reads."""

    text: str  # with a prefilled "<think>" put back, so verifier and escalation log see the full text
    num_tokens: int
    prompt_tokens: int
    finish_reason: str = "stop"
    reasoning: str = ""  # reasoning an upstream sent apart from the content (its reasoning_content)


@dataclass(frozen=True)
class TierPlan:
    """How one request calls one tier, checked against the server's limits before any tier runs."""

    target: Target | None = None  # None: answered in process (``local``), or unavailable
    prompt: Prompt | None = None
    params: SamplingParams | None = None
    local: TierCaller | None = None  # the tier answers in process (its backend's ``in_process`` caller)
    unavailable: str | None = None  # the tier's backend failed to start: calling it fails (and falls back)


class _AnsweredBackend(Backend):
    """Replays an answer a tier already generated, so the chat route sends it like any other completion."""

    name = "routed"
    metered = False  # the tier call was metered where it ran

    def __init__(self, settings: ServeSettings, output: TierOutput):
        super().__init__(settings)
        self.output = output

    async def generate(self, adapter: str | None, prompt: Prompt, params: SamplingParams):
        out = self.output
        if out.reasoning:
            yield TextDelta(out.reasoning, reasoning=True)
        if out.text:
            yield TextDelta(out.text)
        yield Finished(out.finish_reason, out.prompt_tokens, out.num_tokens)


class TierTargets:
    """The serving side of every tier: the serving backends started for tiers, and the calls to them.

    ``started`` maps (serving backend, model) to a backend started for tiers; ``failed_starts`` to the time and
    error of a start that failed (not retried before ``cooldown_s``).
    """

    def __init__(self, settings: ServeSettings, catalog: ModelCatalog, metrics: ServingMetrics, cooldown_s: float):
        self.settings, self.catalog, self.metrics, self.cooldown_s = settings, catalog, metrics, cooldown_s
        self.started: dict[tuple[str, str], Backend] = {}
        self.failed_starts: dict[tuple[str, str], tuple[float, str]] = {}
        self._in_process: dict[str, TierCaller] = {}  # route-target backend -> its in-process caller
        self._start_lock = asyncio.Lock()

    async def close(self) -> None:
        for backend in self.started.values():
            await backend.close()
        self.started.clear()

    # --- checks at start ---------------------------------------------------------------------------
    def check(self, tiers: Sequence[Tier], where: str) -> None:
        """Refuse tiers this server can never reach (UserInputError naming the route config)."""
        served = {self.settings.model, self.settings.base_name, *self.settings.lora_adapters,
                  *self.settings.lora_adapters.values()}
        for tier in tiers:
            backend = TARGET_BACKENDS.get(tier.backend)
            if backend.shares_served_model and backend.serving_backend is None:  # only the served model will do
                main = self.catalog.backends[0] if self.catalog.backends else None  # the served model's
                shared = main is not None and main.serves_local_model and _same_model(tier.model or "", *served)
                if not shared:
                    raise UserInputError(f"{where}: tier {tier.name!r}: a {tier.backend} tier must be the served "
                                         f"model or one of its --lora adapters (serve it with --backend "
                                         f"{tier.backend} --model {tier.model})")
            if backend.upstream:
                if not self.settings.openai.base_url:
                    raise UserInputError(f"{where}: tier {tier.name!r} (backend {tier.backend}) needs openai.base_url "
                                         "in serve.yaml (the upstream's /v1 root)")
                if not (tier.model or self.settings.openai.model):
                    raise UserInputError(f"{where}: tier {tier.name!r} (backend {tier.backend}) needs a 'model' "
                                         "(or openai.model in serve.yaml)")
                if self.settings.think.prefill is True:
                    raise UserInputError(f"{where}: tier {tier.name!r} sends chat messages upstream, so it cannot "
                                         "prefill '<think>' (think.prefill: true); use prefill: auto")

    # --- preparing a request -----------------------------------------------------------------------
    async def plan(self, tiers: Sequence[Tier], messages: list[dict[str, str]],
                   body: ChatCompletionRequest) -> dict[str, TierPlan]:
        """Render and check the request for every tier that may be asked, before any is: a prompt or
        max_tokens over a limit is the client's 400 here, not a tier failure the router would fall back on."""
        check_queue(self.catalog.waiting(), self.settings.limits)
        plans = {}
        for tier in tiers:
            backend = TARGET_BACKENDS.get(tier.backend)
            if backend.in_process is not None:
                plans[tier.name] = TierPlan(local=self._in_process_caller(backend))
                continue
            try:
                target = await self._target(tier, backend)
            except APIError:
                raise
            except Exception as exc:  # noqa: BLE001 - a tier that cannot start fails like one that cannot answer
                log.warning("tier %r is unavailable: %s", tier.name, exc)
                plans[tier.name] = TierPlan(unavailable=f"cannot start: {exc}")
                continue
            try:
                prompt = chat_prompt(target, messages)
            except APIError:
                raise
            except Exception as exc:  # noqa: BLE001 - chat templates raise for message orders they do not support
                raise APIError(400, f"tier '{tier.name}': the chat template rejected these messages: {exc}",
                               "invalid_messages", "messages") from None
            params = sampling_params(target, prompt, self.settings.limits, max_tokens=body.requested_max_tokens(),
                                     default_max_tokens=self.settings.limits.default_max_tokens,
                                     temperature=body.temperature, top_p=body.top_p, stop=body.stop_list(),
                                     seed=body.seed)
            plans[tier.name] = TierPlan(target, prompt, params)
        return plans

    def _in_process_caller(self, backend: TargetBackend) -> TierCaller:
        caller = self._in_process.get(backend.name)
        if caller is None:
            caller = self._in_process[backend.name] = backend.in_process()
        return caller

    # --- tier → serving backend --------------------------------------------------------------------
    def own_target(self, tier: Tier) -> Target | None:
        """The server's own model or loaded adapter when ``tier.model`` names it (looked up per request, so
        adapters loaded or unloaded at run time count)."""
        if not TARGET_BACKENDS.get(tier.backend).shares_served_model or not tier.model:
            return None
        for backend in self.catalog.backends:
            if not backend.serves_local_model:
                continue
            if _same_model(tier.model, backend.served_name, backend.settings.model, backend.model_root):
                return self.catalog.target(backend.served_name)
            for info in backend.adapters().values():
                if _same_model(tier.model, info.name, info.path):
                    try:
                        return self.catalog.target(info.name)
                    except APIError:  # mid-load: not servable yet
                        return None
        return None

    async def _target(self, tier: Tier, backend: TargetBackend) -> Target:
        own = self.own_target(tier)
        if own is not None:
            return own
        kind = backend.serving_backend
        if kind is None:
            raise RuntimeError(f"tier {tier.name!r}: the {tier.backend} model {tier.model!r} is not served here")
        served = await self._start(kind, tier.model or "", lambda: self._tier_settings(tier, kind, backend.upstream))
        if backend.upstream:
            return Target(tier.name, served, None, ThinkFormat())  # chat goes upstream as messages: no prefill
        think = resolve_think_format(served.model_root, self.settings.think.prefill, self.settings.think.split)
        return Target(tier.name, served, None, think)

    def _tier_settings(self, tier: Tier, kind: str, upstream: bool) -> ServeSettings:
        update: dict[str, Any] = {"backend": kind, "served_model_name": tier.name, "lora_adapters": {}}
        if upstream:
            model = tier.model or self.settings.openai.model
            update["openai"] = self.settings.openai.model_copy(update={"model": model})
            update["model"] = model
        else:
            update["model"] = tier.model
        return self.settings.model_copy(update=update)

    async def _start(self, kind: str, model: str, settings: Callable[[], ServeSettings]) -> Backend:
        key = (kind, model)
        async with self._start_lock:  # one start at a time: two requests never load the same model twice
            backend = self.started.get(key)
            if backend is None:
                failed = self.failed_starts.get(key)
                if failed is not None and time.monotonic() - failed[0] < self.cooldown_s:
                    raise RuntimeError(failed[1])  # a model that would not load is retried after the cooldown
                backend = get_backend_factory(kind)(settings())
                log.info("starting a %s backend for tier model %r (routing)", kind, model)
                try:
                    await backend.start()
                except Exception as exc:
                    self.failed_starts[key] = (time.monotonic(), f"{type(exc).__name__}: {exc}")
                    raise RuntimeError(self.failed_starts[key][1]) from exc
                self.failed_starts.pop(key, None)
                self.started[key] = backend
        return backend

    # --- calling tiers -----------------------------------------------------------------------------
    def caller(self, plans: dict[str, TierPlan], loop: asyncio.AbstractEventLoop,
               answers: dict[str, list[TierOutput]]) -> Callable[[Tier, str, int], list[TierOutput]]:
        """``call_tier`` for the router and the cascade (they run in a worker thread); each call's outputs
        are also kept in ``answers[tier]`` so the reply can carry their token counts and reasoning."""

        def call_tier(tier: Tier, prompt: str, n: int) -> list[TierOutput]:
            plan = plans[tier.name]
            if plan.unavailable is not None:
                raise RuntimeError(plan.unavailable)
            if plan.local is not None:
                outputs = [TierOutput(output_text(o), output_tokens(o), estimate_tokens(prompt))
                           for o in plan.local(tier, prompt, n)]
            else:
                outputs = asyncio.run_coroutine_threadsafe(self._sample(plan, n), loop).result()
            answers[tier.name] = outputs
            return outputs

        return call_tier

    async def _sample(self, plan: TierPlan, n: int) -> list[TierOutput]:
        """``n`` completions at once (the hf backend batches them); a request seed gives sample i seed + i."""
        params = [plan.params if plan.params.seed is None else replace(plan.params, seed=plan.params.seed + i)
                  for i in range(n)]
        tasks = [asyncio.ensure_future(self._generate(plan, p)) for p in params]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _generate(self, plan: TierPlan, params: SamplingParams) -> TierOutput:
        target = plan.target
        events = metered(target, target.backend.generate(target.adapter, plan.prompt, params), self.metrics,
                         time.monotonic())
        text, reasoning, finished = [], [], None
        async for event in events:
            if isinstance(event, Finished):
                finished = event
            else:
                (reasoning if event.reasoning else text).append(event.text)
        if finished is None:
            raise RuntimeError(f"the {target.backend.name} backend ended without finishing")
        return TierOutput(with_prefill("".join(text), target.think.prefill), finished.completion_tokens,
                          finished.prompt_tokens, finished.finish_reason, "".join(reasoning))

    def answered(self, name: str, tier: Tier, output: TierOutput, plans: dict[str, TierPlan]) -> Target:
        """The target that sends ``output`` as the answer to ``name``."""
        plan = plans[tier.name]
        # The prefill is already back in the text; the split follows the answering model's format.
        think = ThinkFormat(prefill=False, split=plan.target.think.split if plan.target is not None else False)
        return Target(name, _AnsweredBackend(self.settings, output), None, think)


def _same_model(model: str, *candidates: str | None) -> bool:
    """Whether ``model`` is one of ``candidates``: the same text, or paths to the same folder."""
    if not model:
        return False
    for candidate in candidates:
        if not candidate:
            continue
        if model == candidate:
            return True
        a, b = Path(model).expanduser(), Path(candidate).expanduser()
        if a.exists() and b.exists() and a.resolve() == b.resolve():
            return True
    return False


__all__ = ["TierOutput", "TierPlan", "TierTargets"]
