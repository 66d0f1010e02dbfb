"""The router and the cascade as model names of ``srl-rlvr serve`` (docs/serving.md, "Serving integration").

    srl-rlvr serve --model smollm2-135m --route-config configs/route-cpu.yaml \\
        --predictor out/route_eval/predictor.json --escalation-log out/escalations.jsonl

adds ``router-<name>-<threshold>`` (any threshold in [0, 1]) and ``cascade-<name>`` to the catalog. A
request for one runs :meth:`Router.call` (fallbacks, retries, cooldowns, the key's budget) or
:meth:`Cascade.run` in a worker thread; every tier call they make runs on the event loop through a
serving backend:

* an ``hf``/``vllm`` tier whose ``model`` is the served model, or a LoRA adapter loaded on it (by name or
  folder): the server's own backend, so batching, the prefix cache and hot-swap apply, and the vLLM-named
  metrics count the call under that model;
* any other ``hf`` tier: an hf backend of its own, started on the first request that may need it;
* an ``openai`` tier: an upstream client for serve.yaml's ``openai:`` endpoint, asking for the tier's model;
* a ``demo_solver`` tier: the routing package's SIMULATED exact solver.

The router reads the *problem*: the last user message, or the problem inside it when it has the training
layout (``Problem:\\n...\\n\\nSteps so far:``, :func:`srl_rlvr.prompts.full_problem_messages`). Model tiers
get the whole conversation, rendered by their own tokenizer (``<think>`` prefill included where their
stage manifest asks for it); the solver reads the problem. The answer goes out as an ordinary chat
completion whose ``model`` is the requested name; streaming sends it once it is complete.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from prometheus_client import CollectorRegistry, Counter

from srl_rlvr.errors import UserInputError
from srl_rlvr.prompts import with_prefill
from srl_rlvr.routing import (
    AllTiersFailed,
    BudgetExceeded,
    Cascade,
    CascadeResult,
    NoTierAvailable,
    Router,
    Tier,
    is_router_model,
    load_route_config,
    load_router,
    resolve_router_model,
)
from srl_rlvr.routing.demo_solver import solve_demo_completion
from srl_rlvr.routing.tiers import estimate_tokens
from srl_rlvr.serving.adapter import ThinkFormat, resolve_think_format
from srl_rlvr.serving.backends import Backend, Finished, Prompt, SamplingParams, TextDelta, get_backend_factory
from srl_rlvr.serving.catalog import ModelCatalog, Target
from srl_rlvr.serving.errors import APIError
from srl_rlvr.serving.generation import chat_prompt, check_queue, metered, sampling_params
from srl_rlvr.serving.metrics import ServingMetrics
from srl_rlvr.serving.schemas import ChatCompletionRequest
from srl_rlvr.serving.settings import ServeSettings

log = logging.getLogger("srl_rlvr.serving")

HEADER_TIER = "x-srl-rlvr-tier"  # the tier whose answer this is
HEADER_COST = "x-srl-rlvr-cost-usd"  # dollars: the answering call (router) or every call made (cascade)
HEADER_SIMULATED = "x-srl-rlvr-simulated"  # "true" when that tier is a stand-in (its cost and quality are too)
HEADER_ESCALATIONS = "x-srl-rlvr-escalations"  # cascade: how many times the request moved to the next tier
HEADER_VERIFIED = "x-srl-rlvr-verified"  # cascade: whether the returned answer passed the verifier
HEADER_FAILED = "x-srl-rlvr-failed-tiers"  # router: tiers that failed before the answering one (when any)

_FULL_PROBLEM = re.compile(r"^Problem:\n(?P<problem>.+?)\n\nSteps so far:\n", re.S)
_OWN_KINDS = ("hf", "vllm")  # server backends that run a model locally, so a tier of that model can share it
_ESCALATION_REASONS = {"format": "format", "agreement": "agreement", "task check failed": "task_check",
                       "no completions": "no_completions"}


@dataclass(frozen=True)
class TierOutput:
    """One completion of a tier call: ``.text`` and ``.num_tokens`` are what the router prices and reads."""

    text: str  # with a prefilled "<think>" put back, so verifier and escalation log see the full text
    num_tokens: int
    prompt_tokens: int
    finish_reason: str = "stop"
    reasoning: str = ""  # reasoning an upstream sent apart from the content (its reasoning_content)


@dataclass(frozen=True)
class _TierPlan:
    """How one request calls one tier, checked against the server's limits before any tier runs."""

    target: Target | None = None  # None: the demo solver
    prompt: Prompt | None = None
    params: SamplingParams | None = None
    unavailable: str | None = None  # the tier's backend failed to start: calling it fails (and falls back)


class RouteCounters:
    """``srl_rlvr:*`` counters in the app's registry (beside the vLLM-named ones)."""

    def __init__(self, registry: CollectorRegistry):
        self.router_requests = Counter(
            "srl_rlvr:router_requests", "Requests answered through a router model name, by the tier that answered.",
            ("router", "tier"), registry=registry)
        self.cascade_requests = Counter(
            "srl_rlvr:cascade_requests", "Requests answered through a cascade model name, by the tier whose answer "
            "was returned.", ("cascade", "tier"), registry=registry)
        self.cascade_escalations = Counter(
            "srl_rlvr:cascade_escalations", "Cascade moves to the next tier; reason: format, agreement, task_check, "
            "no_completions or error (the tier failed).", ("cascade", "from_tier", "to_tier", "reason"),
            registry=registry)
        self.rejected = Counter(
            "srl_rlvr:route_rejected", "Router or cascade requests refused: budget_exceeded (429), all_tiers_failed "
            "(502), no_tier_available (503).", ("name", "reason"), registry=registry)


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


class RoutingBridge:
    """A :class:`~srl_rlvr.serving.catalog.VirtualModelSource` for one route config's router and cascade."""

    def __init__(self, settings: ServeSettings, catalog: ModelCatalog, metrics: ServingMetrics, router: Router,
                 cascade: Cascade, config_path: str):
        self.settings, self.catalog, self.metrics = settings, catalog, metrics
        self.router, self.cascade, self.config_path = router, cascade, config_path
        self.counters = RouteCounters(metrics.registry)
        self.created = int(time.time())
        self._private: dict[tuple[str, str], Backend] = {}  # (backend kind, model) -> started backend
        self._failed_starts: dict[tuple[str, str], tuple[float, str]] = {}  # -> (when, error): not retried at once
        self._start_lock = asyncio.Lock()
        self._check_tiers()

    @classmethod
    def from_settings(cls, settings: ServeSettings, catalog: ModelCatalog, metrics: ServingMetrics) -> RoutingBridge:
        """The bridge for ``settings.routing`` (UserInputError for a bad route config, predictor or tier)."""
        section = settings.routing
        if not section.config:
            raise UserInputError("routing.config is not set (srl-rlvr serve --route-config PATH)")
        router = load_router(section.config, section.predictor)
        cascade = load_route_config(section.config).build_cascade(router.tiers, log=section.escalation_log)
        return cls(settings, catalog, metrics, router, cascade, section.config)

    # --- the catalog's hook ------------------------------------------------------------------------
    def resolve(self, name: str) -> Any:
        if name == self.cascade.name:
            return _CascadeModel(self)
        if not is_router_model(name):
            return None
        try:
            router = resolve_router_model(name, {self.router.name: self.router})
        except UserInputError as exc:
            return _Refused(APIError(404, f"The model `{name}` does not exist: {exc}", "model_not_found", "model"))
        return _RouterModel(self, router, name)

    def cards(self) -> list[dict[str, Any]]:
        return [{"id": name, "object": "model", "created": self.created, "owned_by": "srl-rlvr",
                 "root": self.config_path, "parent": None} for name in (self.router.model, self.cascade.name)]

    async def close(self) -> None:
        for backend in self._private.values():
            await backend.close()
        self._private.clear()

    # --- preparing a request -----------------------------------------------------------------------
    def problem(self, body: Any, name: str) -> tuple[str, list[dict[str, str]]]:
        """(the problem the router reads, the chat messages) of a request for a routed name."""
        if not isinstance(body, ChatCompletionRequest):
            raise APIError(400, f"`{name}` is served on /v1/chat/completions only", "unsupported_endpoint", "model")
        messages = [m.as_template_message() for m in body.messages]
        user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        if not user.strip():
            raise APIError(400, f"`{name}` routes on the last user message, and this request has none with text",
                           "invalid_messages", "messages")
        match = _FULL_PROBLEM.match(user)
        return (match["problem"] if match else user), messages

    async def plan(self, tiers: Sequence[Tier], messages: list[dict[str, str]],
                   body: ChatCompletionRequest) -> dict[str, _TierPlan]:
        """Render and check the request for every tier that may be asked, before any is: a prompt or
        max_tokens over a limit is the client's 400 here, not a tier failure the router would fall back on."""
        check_queue(self.catalog.waiting(), self.settings.limits)
        plans = {}
        for tier in tiers:
            if tier.backend == "demo_solver":
                plans[tier.name] = _TierPlan()
                continue
            try:
                target = await self._target(tier)
            except APIError:
                raise
            except Exception as exc:  # noqa: BLE001 - a tier that cannot start fails like one that cannot answer
                log.warning("tier %r is unavailable: %s", tier.name, exc)
                plans[tier.name] = _TierPlan(unavailable=f"cannot start: {exc}")
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
            plans[tier.name] = _TierPlan(target, prompt, params)
        return plans

    # --- tier → backend ----------------------------------------------------------------------------
    def own_target(self, tier: Tier) -> Target | None:
        """The server's own model or loaded adapter when ``tier.model`` names it (looked up per request, so
        adapters loaded or unloaded at run time count)."""
        if tier.backend not in _OWN_KINDS or not tier.model:
            return None
        for backend in self.catalog.backends:
            if backend.name not in _OWN_KINDS:
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

    async def _target(self, tier: Tier) -> Target:
        own = self.own_target(tier)
        if own is not None:
            return own
        if tier.backend == "hf":
            backend = await self._private_backend("hf", tier.model, lambda: self._tier_settings(tier, "hf"))
            think = resolve_think_format(backend.model_root, self.settings.think.prefill, self.settings.think.split)
            return Target(tier.name, backend, None, think)
        if tier.backend == "openai":
            backend = await self._private_backend("openai", tier.model or "",
                                                  lambda: self._tier_settings(tier, "openai"))
            return Target(tier.name, backend, None, ThinkFormat())  # chat goes upstream as messages: no prefill
        raise RuntimeError(f"tier {tier.name!r}: the {tier.backend} model {tier.model!r} is not served here")

    def _tier_settings(self, tier: Tier, kind: str) -> ServeSettings:
        update: dict[str, Any] = {"backend": kind, "served_model_name": tier.name, "lora_adapters": {}}
        if kind == "hf":
            update["model"] = tier.model
        else:
            upstream = tier.model or self.settings.openai.model
            update["openai"] = self.settings.openai.model_copy(update={"model": upstream})
            update["model"] = upstream
        return self.settings.model_copy(update=update)

    async def _private_backend(self, kind: str, model: str, settings: Callable[[], ServeSettings]) -> Backend:
        key = (kind, model)
        async with self._start_lock:  # one start at a time: two requests never load the same model twice
            backend = self._private.get(key)
            if backend is None:
                failed = self._failed_starts.get(key)
                if failed is not None and time.monotonic() - failed[0] < self.router.health.cooldown_s:
                    raise RuntimeError(failed[1])  # a model that would not load is retried after the cooldown
                backend = get_backend_factory(kind)(settings())
                log.info("starting a %s backend for tier model %r (routing)", kind, model)
                try:
                    await backend.start()
                except Exception as exc:
                    self._failed_starts[key] = (time.monotonic(), f"{type(exc).__name__}: {exc}")
                    raise RuntimeError(self._failed_starts[key][1]) from exc
                self._failed_starts.pop(key, None)
                self._private[key] = backend
        return backend

    def _check_tiers(self) -> None:
        where = self.config_path
        names = {self.router.model, self.cascade.name}
        if self.settings.base_name in names or is_router_model(self.settings.base_name):
            raise UserInputError(f"served model name {self.settings.base_name!r} clashes with the routed names "
                                 f"(router-..., {self.cascade.name})")
        served = {self.settings.model, self.settings.base_name, *self.settings.lora_adapters,
                  *self.settings.lora_adapters.values()}
        for tier in self.router.tiers:
            if tier.backend == "vllm" and not (self.settings.backend in _OWN_KINDS
                                               and _same_model(tier.model or "", *served)):
                raise UserInputError(f"{where}: tier {tier.name!r}: a vllm tier must be the served model or one of "
                                     f"its --lora adapters (serve it with --backend vllm --model {tier.model})")
            if tier.backend == "openai":
                if not self.settings.openai.base_url:
                    raise UserInputError(f"{where}: tier {tier.name!r} (backend openai) needs openai.base_url in "
                                         "serve.yaml (the upstream's /v1 root)")
                if not (tier.model or self.settings.openai.model):
                    raise UserInputError(f"{where}: tier {tier.name!r} (backend openai) needs a 'model' "
                                         "(or openai.model in serve.yaml)")
                if self.settings.think.prefill is True:
                    raise UserInputError(f"{where}: tier {tier.name!r} sends chat messages upstream, so it cannot "
                                         "prefill '<think>' (think.prefill: true); use prefill: auto")

    # --- calling tiers -----------------------------------------------------------------------------
    def tier_caller(self, plans: dict[str, _TierPlan], loop: asyncio.AbstractEventLoop,
                    answers: dict[str, list[TierOutput]]) -> Callable[[Tier, str, int], list[TierOutput]]:
        """``call_tier`` for the router and the cascade (they run in a worker thread); each call's outputs
        are also kept in ``answers[tier]`` so the reply can carry their token counts and reasoning."""

        def call_tier(tier: Tier, prompt: str, n: int) -> list[TierOutput]:
            plan = plans[tier.name]
            if plan.unavailable is not None:
                raise RuntimeError(plan.unavailable)
            if plan.target is None:
                text = solve_demo_completion(prompt)
                outputs = [TierOutput(text, estimate_tokens(text), estimate_tokens(prompt))] * n
            else:
                outputs = asyncio.run_coroutine_threadsafe(self._sample(plan, n), loop).result()
            answers[tier.name] = outputs
            return outputs

        return call_tier

    async def _sample(self, plan: _TierPlan, n: int) -> list[TierOutput]:
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

    async def _generate(self, plan: _TierPlan, params: SamplingParams) -> TierOutput:
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

    def answered(self, name: str, tier: Tier, output: TierOutput, plans: dict[str, _TierPlan]) -> Target:
        """The target that sends ``output`` as the answer to ``name``."""
        plan = plans[tier.name]
        # The prefill is already back in the text; the split follows the answering model's format.
        think = ThinkFormat(prefill=False, split=plan.target.think.split if plan.target is not None else False)
        return Target(name, _AnsweredBackend(self.settings, output), None, think)

    def rejected(self, name: str, exc: Exception) -> APIError:
        """The API error for a refused routed request (counted); other exceptions are re-raised."""
        if isinstance(exc, BudgetExceeded):
            reason = "budget_exceeded"
            # Never the key itself (BudgetExceeded's own message names it).
            error = APIError(429, f"The budget of this API key is spent: ${exc.spent:.6f} of ${exc.limit:.6f} used; "
                             f"tier '{exc.tier}' would cost about ${exc.needed:.6f}.", reason)
        elif isinstance(exc, AllTiersFailed):
            reason = "all_tiers_failed"
            error = APIError(502, f"Every tier failed: {'; '.join(f'{t}: {e}' for t, e in exc.errors)}", reason)
        elif isinstance(exc, NoTierAvailable):
            reason = "no_tier_available"
            error = APIError(503, f"No tier can take this request now ({exc}); retry later.", reason)
        else:
            raise exc
        self.counters.rejected.labels(name, reason).inc()
        return error


class _RouterModel:
    def __init__(self, bridge: RoutingBridge, router: Router, name: str):
        self.bridge, self.router, self.name = bridge, router, name

    async def select(self, body: Any, catalog: ModelCatalog, api_key: str | None) -> tuple[Target, dict[str, str]]:
        bridge = self.bridge
        problem, messages = bridge.problem(body, self.name)
        plans = await bridge.plan(self.router.tiers, messages, body)
        answers: dict[str, list[TierOutput]] = {}
        call_tier = bridge.tier_caller(plans, asyncio.get_running_loop(), answers)
        try:
            routed = await asyncio.to_thread(self.router.call, problem, call_tier, api_key)
        except (BudgetExceeded, AllTiersFailed, NoTierAvailable) as exc:
            raise bridge.rejected(self.router.name, exc) from None
        bridge.counters.router_requests.labels(self.router.name, routed.tier.name).inc()
        log.debug("%s -> %s (%s), $%.6g", self.name, routed.tier.name, routed.decision.reason, routed.cost)
        headers = _tier_headers(routed.tier, routed.cost)
        if routed.failures:
            headers[HEADER_FAILED] = ",".join(dict.fromkeys(_header_text(t) for t, _ in routed.failures))
        return bridge.answered(self.name, routed.tier, answers[routed.tier.name][0], plans), headers


class _CascadeModel:
    def __init__(self, bridge: RoutingBridge):
        self.bridge = bridge

    async def select(self, body: Any, catalog: ModelCatalog, api_key: str | None) -> tuple[Target, dict[str, str]]:
        bridge, cascade = self.bridge, self.bridge.cascade
        problem, messages = bridge.problem(body, cascade.name)
        budgets = bridge.router.budgets  # one spend per key across the router names and the cascade
        remaining = budgets.remaining(api_key)
        if remaining is not None and remaining <= 0:
            first = cascade.tiers[0]
            raise bridge.rejected(cascade.name, BudgetExceeded(api_key, budgets.spent(api_key),
                                                               budgets.limit(api_key) or 0.0, first.name,
                                                               first.estimated_cost(problem)))
        plans = await bridge.plan(cascade.tiers, messages, body)
        answers: dict[str, list[TierOutput]] = {}
        call_tier = bridge.tier_caller(plans, asyncio.get_running_loop(), answers)
        try:
            result = await asyncio.to_thread(cascade.run, problem, call_tier)
        except AllTiersFailed as exc:
            raise bridge.rejected(cascade.name, exc) from None
        budgets.record(api_key, result.cost)
        steps = escalation_steps(cascade, result)
        for from_tier, to_tier, reason in steps:
            bridge.counters.cascade_escalations.labels(cascade.name, from_tier, to_tier, reason).inc()
        bridge.counters.cascade_requests.labels(cascade.name, result.tier.name).inc()
        outputs = answers[result.tier.name]
        output = next((o for o in outputs if o.text == result.completion), outputs[0])
        headers = {**_tier_headers(result.tier, result.cost), HEADER_ESCALATIONS: str(len(steps)),
                   HEADER_VERIFIED: _flag(result.verified)}
        return bridge.answered(cascade.name, result.tier, output, plans), headers


class _Refused:
    """A routed-looking name that names no router here (or a bad threshold): its requests get ``error``."""

    def __init__(self, error: APIError):
        self.error = error

    async def select(self, body: Any, catalog: ModelCatalog, api_key: str | None) -> tuple[Target, dict[str, str]]:
        raise self.error


def escalation_steps(cascade: Cascade, result: CascadeResult) -> list[tuple[str, str, str]]:
    """(from tier, to tier, reason) for each move to the next tier: an unsure answer (the verifier's reason,
    as a label) or a failed call ("error")."""
    order = [t.name for t in cascade.tiers]
    unsure = {e.from_tier: e.reason for e in result.escalations}
    steps = []
    for i in range(order.index(result.tier.name)):
        reason = unsure.get(order[i])
        label = "error" if reason is None else _ESCALATION_REASONS.get(reason.split(":", 1)[0].strip(), "other")
        steps.append((order[i], order[i + 1], label))
    return steps


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


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _header_text(text: str) -> str:
    return quote(text, safe="-_.~:")  # headers are latin-1; tier names come from YAML keys


def _tier_headers(tier: Tier, cost: float) -> dict[str, str]:
    return {HEADER_TIER: _header_text(tier.name), HEADER_COST: f"{cost:.8g}", HEADER_SIMULATED: _flag(tier.simulated)}


__all__ = ["HEADER_COST", "HEADER_ESCALATIONS", "HEADER_FAILED", "HEADER_SIMULATED", "HEADER_TIER", "HEADER_VERIFIED",
           "RouteCounters", "RoutingBridge", "TierOutput", "escalation_steps"]
