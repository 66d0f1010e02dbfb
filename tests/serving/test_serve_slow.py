"""The real embedded SmolLM2-135M behind a live server, through the official openai client (slow)."""

from __future__ import annotations

import openai
import pytest

from srl_rlvr.serving.app import create_app
from srl_rlvr.serving.live import LiveServer
from srl_rlvr.serving.settings import ServeSettings


@pytest.mark.slow
def test_smollm2_chat_plain_and_streamed():
    settings = ServeSettings.model_validate({"model": "smollm2-135m"})
    with LiveServer(create_app(settings), startup_timeout_s=600) as live:
        client = openai.OpenAI(base_url=f"{live.base_url}/v1", api_key="unused", max_retries=0, timeout=300)
        question = [{"role": "user", "content": "What is 7 times 6? Answer with a number."}]
        plain = client.chat.completions.create(model="smollm2-135m", messages=question, max_tokens=24, temperature=0)
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="smollm2-135m", messages=question, max_tokens=24, temperature=0, stream=True) if c.choices)
        text = plain.choices[0].message.content
        assert text and text == streamed
        assert any(ch.isalnum() for ch in text)  # real words, not the tiny model's noise
        assert [m.id for m in client.models.list().data] == ["smollm2-135m"]
