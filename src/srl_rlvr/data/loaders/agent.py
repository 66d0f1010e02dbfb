"""Agent transcripts: OpenAI-style chat messages with tool calls, one transcript per JSONL row.

Each assistant message is one expert action. For a step-wise (SRL) instance the model sees the task, then
the context before the action, and must produce the action. The context is rendered for a *generic* chat
template: many small-model templates reject the ``tool`` role (or need tool schemas), so tool results
become user messages ``Observation (<tool>):\\n<output>`` and earlier actions become plain assistant text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srl_rlvr.data.loaders.jsonl import LoadResult, load_jsonl
from srl_rlvr.data.schema import Trajectory, validate_trajectory
from srl_rlvr.errors import InvalidRecord

SYSTEM_ROLES = ("system", "developer")
OBSERVATION_ROLES = ("tool", "function", "ipython")
KNOWN_ROLES = ("user", "assistant", *SYSTEM_ROLES, *OBSERVATION_ROLES)


@dataclass(frozen=True)
class AgentTurn:
    """One expert action and the rendered conversation before it (the task itself excluded)."""

    context: list[dict]
    action: str


def content_text(content: Any) -> str:
    """A message's content as text: a string, or the text parts of a list of content parts.

    >>> content_text([{"type": "text", "text": "Fix"}, {"type": "image_url"}, {"type": "text", "text": "it"}])
    'Fix\\nit'
    >>> content_text(None)
    ''
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # non-text parts (images, audio) have no text to learn from; skipped
        return "\n".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return str(content)


def _tool_calls(message: dict) -> list[dict]:
    calls = list(message.get("tool_calls") or [])
    if message.get("function_call"):  # the legacy single-call field
        calls.append({"function": message["function_call"]})
    return calls


def render_tool_call(call: dict) -> str:
    """``<tool_call>{"name":...,"arguments":{...}}</tool_call>``: compact JSON, argument keys sorted.

    >>> render_tool_call({"id": "c1", "type": "function",
    ...                   "function": {"name": "bash", "arguments": '{"cmd": "ls", "cwd": "/repo"}'}})
    '<tool_call>{"name":"bash","arguments":{"cmd":"ls","cwd":"/repo"}}</tool_call>'
    """
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass  # not JSON (e.g. raw code for a custom tool): keep the string as sent
    # "name" first, as in the Hermes/Qwen <tool_call> format; the arguments' keys are sorted.
    args_json = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    name_json = json.dumps(function.get("name"), ensure_ascii=False)
    body = '{"name":' + name_json + ',"arguments":' + args_json + "}"
    return f"<tool_call>{body}</tool_call>"


def render_action(message: dict) -> str:
    """An assistant message as text: its content, then one ``<tool_call>`` line per tool call."""
    parts = [content_text(message.get("content")).strip()]
    parts += [render_tool_call(call) for call in _tool_calls(message)]
    return "\n".join(p for p in parts if p)


def _first_user_index(messages: list[dict]) -> int | None:
    return next((i for i, m in enumerate(messages) if m.get("role") == "user"), None)


def problem_from_messages(messages: list[dict]) -> str:
    """The task: the first user message's text. ValueError if there is no user message."""
    index = _first_user_index(messages)
    if index is None:
        raise ValueError("the transcript has no user message to take the problem from")
    return content_text(messages[index].get("content"))


def transcript_system_prompt(messages: list[dict]) -> str | None:
    """The system (or developer) messages before the task, joined; None if there are none.

    They are not part of any turn's context; the SRL builder may prepend them.
    """
    end = _first_user_index(messages)
    head = messages if end is None else messages[:end]
    texts = [content_text(m.get("content")).strip() for m in head if m.get("role") in SYSTEM_ROLES]
    texts = [t for t in texts if t]
    return "\n\n".join(texts) if texts else None


def _tool_names(messages: list[dict]) -> dict[str, str]:
    """tool_call_id -> tool name, so an observation can say which tool produced it."""
    names = {}
    for m in messages:
        if m.get("role") == "assistant":
            for call in m.get("tool_calls") or []:
                name = (call.get("function") or {}).get("name")
                if isinstance(call.get("id"), str) and isinstance(name, str):
                    names[call["id"]] = name
    return names


def _render_context_message(message: dict, tool_names: dict[str, str]) -> dict:
    role = message.get("role")
    if role == "assistant":
        return {"role": "assistant", "content": render_action(message)}
    if role in OBSERVATION_ROLES:
        call_id = message.get("tool_call_id")
        source = tool_names.get(call_id) or message.get("name") or call_id or role
        return {"role": "user", "content": f"Observation ({source}):\n{content_text(message.get('content'))}"}
    if role in SYSTEM_ROLES:  # a system message in mid-conversation: most templates allow it only first
        return {"role": "user", "content": f"System: {content_text(message.get('content'))}"}
    return {"role": "user", "content": content_text(message.get("content"))}


def agent_turns(messages: list[dict]) -> list[AgentTurn]:
    """One turn per assistant message, with the rendered messages before it as context.

    The context leaves out the first user message (the problem) and the system messages before it (see
    :func:`transcript_system_prompt`). Consecutive user-side messages (parallel tool results, or a result
    followed by a user reply) are joined into one user message, so roles alternate.

    >>> turns = agent_turns([
    ...     {"role": "user", "content": "List the files."},
    ...     {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
    ...         "function": {"name": "bash", "arguments": '{"cmd": "ls"}'}}]},
    ...     {"role": "tool", "tool_call_id": "call_1", "content": "README.md"},
    ...     {"role": "assistant", "content": "There is one file: README.md."}])
    >>> [t.action for t in turns]
    ['<tool_call>{"name":"bash","arguments":{"cmd":"ls"}}</tool_call>', 'There is one file: README.md.']
    >>> turns[1].context[1]
    {'role': 'user', 'content': 'Observation (bash):\\nREADME.md'}
    """
    task = _first_user_index(messages)
    tool_names = _tool_names(messages)
    turns, context = [], []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "assistant":
            turns.append(AgentTurn(context=list(context), action=render_action(message)))
        is_task_or_its_system_prompt = i == task or (role in SYSTEM_ROLES and (task is None or i < task))
        if not is_task_or_its_system_prompt:
            rendered = _render_context_message(message, tool_names)
            if rendered["role"] == "user" and context and context[-1]["role"] == "user":
                # Parallel tool results arrive back to back; templates such as Gemma's insist that
                # user and assistant alternate, so they share one user message.
                context[-1] = {"role": "user", "content": context[-1]["content"] + "\n\n" + rendered["content"]}
            else:
                context.append(rendered)
    return turns


def _check_messages(messages: Any, path: str, line: int) -> None:
    """Raise InvalidRecord at the first malformed message, naming e.g. ``messages.3.role`` (0-based)."""
    if not isinstance(messages, list):
        got = type(messages).__name__
        raise InvalidRecord(path, line, "messages", f"expected a list of chat messages, got {got}")
    for i, m in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(m, dict):
            raise InvalidRecord(path, line, where, f"expected a message object, got {type(m).__name__}")
        role = m.get("role")
        if role is None:
            raise InvalidRecord(path, line, f"{where}.role", "is required")
        if role not in KNOWN_ROLES:
            expected = ", ".join(KNOWN_ROLES)
            raise InvalidRecord(path, line, f"{where}.role", f"unknown role {role!r} (expected one of {expected})")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            got = type(content).__name__
            raise InvalidRecord(path, line, f"{where}.content", f"expected a string or a list of parts, got {got}")
        calls = m.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise InvalidRecord(path, line, f"{where}.tool_calls", f"expected a list, got {type(calls).__name__}")
        for j, call in enumerate(calls or []):
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise InvalidRecord(path, line, f"{where}.tool_calls.{j}.function.name", "is required (a string)")
        if role == "assistant" and not render_action(m):
            reason = "assistant message has neither content nor tool_calls"
            raise InvalidRecord(path, line, f"{where}.content", reason)
    if not any(m["role"] == "assistant" for m in messages):
        raise InvalidRecord(path, line, "messages", "holds no assistant message, so there is no expert action")


def agent_row_to_trajectory(row: Any, path: str, line: int) -> Trajectory:
    """Turn one decoded transcript row into a Trajectory with ``domain="agent"``."""
    if not isinstance(row, dict):
        raise InvalidRecord(path, line, "<row>", f"expected a JSON object, got {type(row).__name__}")
    if "messages" not in row:
        raise InvalidRecord(path, line, "messages", "is required")
    messages = row["messages"]
    _check_messages(messages, path, line)
    record = {"domain": "agent", **row, "id": row.get("id", f"agent-{line}")}
    if "problem" not in row:
        try:
            record["problem"] = problem_from_messages(messages)
        except ValueError as exc:
            raise InvalidRecord(path, line, "messages", str(exc)) from None
    return validate_trajectory(record, path, line)


def load_agent_transcripts(path: str | Path, skip_invalid: bool = False) -> LoadResult[Trajectory]:
    """Load JSONL rows with ``messages`` (and optional ``id``, ``problem``, ``answer``, ``tests``).

    ``problem`` defaults to the first user message, ``id`` to ``agent-<line>``.
    """
    return load_jsonl(path, agent_row_to_trajectory, skip_invalid=skip_invalid)
