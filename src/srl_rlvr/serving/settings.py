"""Server settings: ``serve.yaml`` (checked key by key) plus CLI flags plus ``SRL_RLVR_API_KEYS``.

    srl-rlvr serve --model smollm2-135m --config configs/serve.yaml

Every key is optional except ``model`` (which ``--model`` may give instead). A wrong key or a value of
the wrong type is a :class:`~srl_rlvr.errors.UserInputError` naming the file and the key.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from srl_rlvr.core.names import did_you_mean
from srl_rlvr.core.yamlconf import read_yaml, resolve_path
from srl_rlvr.errors import UserInputError

API_KEYS_ENV = "SRL_RLVR_API_KEYS"
Scope = Literal["admin", "user"]
Auto = Literal["auto"]
# Parts pydantic adds to an error location for union members ("bool", "literal['auto']"), not keys.
_TYPE_TAG = re.compile(r"^(bool|int|float|str|none|literal\[.*\]|function-\w+.*|list\[.*\]|dict\[.*\])$")


class _Section(BaseModel):
    # strict: "8000" is not a port and "yes" is not a bool; extra keys are errors that name the key.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ApiKey(_Section):
    key: SecretStr = Field(min_length=1)
    scope: Scope = "user"


class LimitSettings(_Section):
    max_prompt_tokens: int = Field(2048, ge=1, description="Longer prompts get a 400.")
    max_tokens: int = Field(1024, ge=1, description="Largest max_tokens a request may ask for.")
    default_max_tokens: int = Field(256, ge=1, description="max_tokens when a chat request gives none.")
    max_waiting_requests: int = Field(256, ge=1, description="More queued requests than this get a 503.")
    max_body_bytes: int = Field(4_000_000, ge=1024, description="Larger request bodies get a 413.")
    body_timeout_s: float = Field(
        30.0, gt=0, description="A request body not fully received this many seconds after its headers gets a "
        "408 and its connection closed (a client dribbling its body cannot hold a request open).")
    keep_alive_s: int = Field(
        75, ge=1, description="How long an idle keep-alive connection stays open. Longer than clients' own idle "
        "expiry (httpx: 5 s), so the client closes first and never reuses a connection the server is closing.")


class ThinkSettings(_Section):
    """The SRL ``<think>`` format. ``auto`` reads each model's (or adapter's) ``srl_rlvr_stage.json``."""

    prefill: bool | Literal["empty"] | Auto = Field(
        "auto", description="End chat prompts with '<think>' ('empty': '<think></think>'), as in training.")
    split: bool | Auto = Field("auto", description="Put the monologue in reasoning_content (auto: where prefilled).")


class HFSettings(_Section):
    scheduler: Literal["continuous", "static"] = Field(
        "continuous", description="continuous: requests join and leave the running batch between decode steps; "
        "static: each batch runs until its longest row ends (the old behaviour, kept for comparison).")
    max_batch_size: int = Field(8, ge=1, description="Most requests generating at once (rows of the batch).")
    max_batch_tokens: int = Field(
        16384, ge=1, description="continuous: a request joins the running batch only while the rows' prompt "
        "tokens + max_tokens (the KV cache they can grow to) stay within this; a lone request always runs.")
    batch_wait_ms: float = Field(10.0, ge=0, description="How long a lone request waits for others to join its batch.")
    refill_wait_fraction: float = Field(
        0.1, ge=0, le=1, description="After a batch of k rows, wait up to this fraction of its run time for k "
        "requests to queue again (clients answered by it usually ask again at once).")
    dtype: str | None = Field(None, description="float32, bfloat16, ... (default: the checkpoint's).")
    device: str | None = Field(None, description="cpu, cuda, ... (default: cpu).")
    mixed_adapter_batches: bool = Field(
        True, description="Batch requests for different adapters together (peft adapter_names).")
    prefix_cache: bool = Field(
        True, description="Prefill a prompt prefix shared by a batch (e.g. the system prompt) once.")
    min_prefix_tokens: int = Field(32, ge=1, description="Shorter shared prefixes are not worth caching.")
    prefix_cache_entries: int = Field(8, ge=1, description="Prefix KV caches kept (least recently used dropped).")


class OpenAIUpstreamSettings(_Section):
    base_url: str | None = Field(None, description="Upstream OpenAI-compatible API root, e.g. http://host:8000/v1.")
    model: str | None = Field(None, description="Upstream model name (default: the served name).")
    api_key_env: str | None = Field(None, description="Name of the environment variable holding the upstream key.")
    timeout_s: float = Field(300.0, gt=0)
    retries: int = Field(2, ge=0, description="Retries of a transient failure (connection, timeout, 429, 5xx) "
                                               "before the response starts.")
    backoff_s: float = Field(0.5, gt=0, description="First retry delay in seconds; doubles each retry.")


class VLLMSettings(_Section):
    url: str | None = Field(None, description="Proxy a running vLLM server at this API root; unset: launch one.")
    port: int = Field(8001, ge=1, le=65535, description="Port of the vLLM server we launch (on 127.0.0.1).")
    python: str = Field(sys.executable, description="Python that has vllm installed.")
    max_loras: int = Field(8, ge=1)
    max_lora_rank: int = Field(64, ge=1)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    max_model_len: int | None = Field(None, ge=1)
    extra_args: list[str] = Field(default_factory=list, description="More vLLM command-line arguments.")
    api_key_env: str | None = Field(None, description="Variable holding the key of a proxied vLLM (url mode).")
    startup_timeout_s: float = Field(900.0, gt=0)
    timeout_s: float = Field(300.0, gt=0)


class RoutingSettings(_Section):
    """The router and cascade as model names (docs/serving.md, "Serving integration")."""

    config: str | None = Field(None, description="Route config (e.g. configs/route-cpu.yaml); unset: no routing.")
    predictor: str | None = Field(None, description="predictor.json from `srl-rlvr route eval` (unset: tier priors).")
    escalation_log: str | None = Field(None, description="JSONL the cascade appends escalations to (unset: none).")

    @model_validator(mode="after")
    def _needs_config(self) -> RoutingSettings:
        if (self.predictor or self.escalation_log) and not self.config:
            raise ValueError("routing.predictor and routing.escalation_log need routing.config (the route config)")
        return self


class RegistryServeSettings(_Section):
    uri: str | None = Field(None, description="Model registry for --model models:/N@ALIAS (default: "
                                                "$SRL_RLVR_REGISTRY, else the cache's SQLite registry).")
    poll_s: float = Field(5.0, gt=0, description="Seconds between checks of the served alias.")


class ServeSettings(_Section):
    model: str = Field(description="Base model: 'smollm2-135m', a folder, or a Hugging Face id.")
    served_model_name: str | None = Field(None, description="Name clients use in 'model' (default: --model).")
    backend: str = "hf"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_keys: list[ApiKey] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(default_factory=list, description=(
        "Host header values accepted besides localhost/127.0.0.1/[::1] when bound to loopback (e.g. a reverse "
        "proxy's name); other Host headers get a 400, so a DNS-rebinding page cannot reach the server."))
    lora_adapters: dict[str, str] = Field(default_factory=dict,
                                          description="Adapters loaded at start: name -> folder.")
    limits: LimitSettings = Field(default_factory=LimitSettings)
    think: ThinkSettings = Field(default_factory=ThinkSettings)
    hf: HFSettings = Field(default_factory=HFSettings)
    vllm: VLLMSettings = Field(default_factory=VLLMSettings)
    openai: OpenAIUpstreamSettings = Field(default_factory=OpenAIUpstreamSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    registry: RegistryServeSettings = Field(default_factory=RegistryServeSettings)

    @property
    def base_name(self) -> str:
        return self.served_model_name or self.model


# --- loading ---------------------------------------------------------------------------------------
def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names valid at ``loc`` (for a 'did you mean' hint)."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _describe(exc: ValidationError, where: str) -> UserInputError:
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and _TYPE_TAG.match(p)))
    key = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        hint = did_you_mean(str(loc[-1]), _allowed_keys(ServeSettings, loc))
        return UserInputError(f"{where}: unknown key '{key}'{hint}")
    if err["type"] == "missing":
        return UserInputError(f"{where}: '{key}' is required")
    shown = err.get("input")
    shown = "<hidden>" if "key" in key else repr(shown)  # never echo an API key into logs
    return UserInputError(f"{where}: '{key}': {err['msg']} (got {shown})")


def parse_api_keys_env(text: str) -> list[ApiKey]:
    """``"k1:admin,k2:user"`` → keys. A malformed item is named by position, never echoed.

    >>> [k.scope for k in parse_api_keys_env("abc:admin, def:user")]
    ['admin', 'user']
    """
    keys = []
    for i, item in enumerate(p.strip() for p in text.split(",")):
        if not item:
            continue
        key, sep, scope = item.rpartition(":")
        if not sep or not key or scope not in ("admin", "user"):
            raise UserInputError(f"{API_KEYS_ENV}: item {i + 1} must be KEY:SCOPE with scope admin or user")
        keys.append(ApiKey(key=SecretStr(key), scope=scope))
    return keys


def load_settings(config_path: str | Path | None = None, **overrides: Any) -> ServeSettings:
    """``serve.yaml`` (if given) with the non-None ``overrides`` on top, plus keys from ``SRL_RLVR_API_KEYS``."""
    where = str(config_path) if config_path is not None else "settings"
    raw = read_yaml(config_path) if config_path is not None else {}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserInputError(f"{where}: expected a mapping of settings, got {type(raw).__name__}")
    raw = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
    if isinstance(raw.get("model"), str) and config_path is not None:
        raw["model"] = _resolve_relative(raw["model"], Path(config_path).parent)
    if isinstance(raw.get("routing"), dict) and config_path is not None:
        raw["routing"] = {k: _resolve_relative(v, Path(config_path).parent) if isinstance(v, str) else v
                          for k, v in raw["routing"].items()}
    try:
        settings = ServeSettings.model_validate(raw)
    except ValidationError as exc:
        raise _describe(exc, where) from None
    env_keys = os.environ.get(API_KEYS_ENV, "")
    if env_keys.strip():
        settings = settings.model_copy(update={"api_keys": [*settings.api_keys, *parse_api_keys_env(env_keys)]})
    return settings


def _resolve_relative(model: str, base: Path) -> str:
    """A ``./folder`` in serve.yaml is relative to the YAML file, like paths in pipeline configs."""
    return resolve_path(model, base) if model.startswith((".", "~")) else model


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine.

    >>> [is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "10.0.0.2")]
    [True, True, True, False, False]
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def host_of(header: str) -> str:
    """The host part of a Host header, lowercased, without its port.

    >>> [host_of(h) for h in ("LocalHost:8000", "127.0.0.1", "[::1]:8000", "evil.example")]
    ['localhost', '127.0.0.1', '::1', 'evil.example']
    """
    header = header.strip().lower()
    if header.startswith("["):  # [v6]:port
        return header[1:header.index("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def has_admin_key(settings: ServeSettings) -> bool:
    """Whether the adapter (admin) endpoints exist: only with an admin key, never on a keyless server."""
    return any(k.scope == "admin" for k in settings.api_keys)


def check_bind_allowed(settings: ServeSettings) -> str:
    """Refuse to expose an unauthenticated server beyond loopback; return a one-line notice to print."""
    if settings.api_keys:
        admins = sum(k.scope == "admin" for k in settings.api_keys)
        return f"API keys required ({len(settings.api_keys)} configured, {admins} admin)"
    if not is_loopback(settings.host):
        raise UserInputError(
            f"refusing to serve on {settings.host} without API keys: set api_keys in serve.yaml or "
            f"{API_KEYS_ENV}=KEY:admin, or bind to 127.0.0.1"
        )
    return "loopback-only and unauthenticated (no API keys configured; no adapter endpoints)"
