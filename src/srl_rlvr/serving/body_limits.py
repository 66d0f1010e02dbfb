"""Request-body limits as ASGI middleware: a size cap (413) and a wall-clock deadline (408) on reading the body.

uvicorn reads a body as fast as the client sends it and never times a slow one out, so one client that sends
its headers and then a byte a second would hold a request (and its connection) open for ever: the
*slowloris* attack. :class:`BodyLimits` reads the whole body itself before the app sees the request:

* over ``limits.max_body_bytes`` (counted as received: a missing or false Content-Length does not get
  around it) → 413 ``body_too_large``;
* not complete within ``limits.body_timeout_s`` of the request's headers → 408 ``body_timeout``, and the
  connection is closed.

Either way the request never reaches a route (nor the model). The app then reads the buffered body as usual.

Slow *headers* are not covered here (an ASGI app only sees a request once its headers are complete), and
uvicorn 0.55 has no setting for them either: ``timeout_keep_alive`` only runs between requests, after a
response (any byte received cancels it), and ``h11_max_incomplete_event_size`` caps the size of the
headers (16 KiB), not their time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi.responses import JSONResponse

from srl_rlvr.serving.errors import error_body


def body_too_large(limit: int) -> dict[str, Any]:
    return error_body(413, f"The request body is over this server's limit of {limit} bytes.", "body_too_large")


def body_timeout(limit_s: float) -> dict[str, Any]:
    return error_body(408, f"The request body did not arrive within {limit_s:g} s of its headers "
                           "(limits.body_timeout_s).", "body_timeout")


class BodyLimits:
    """ASGI middleware: read the whole request body, within ``max_body_bytes`` and ``body_timeout_s``, then
    call the app with it (see the module docstring)."""

    def __init__(self, app: Any, max_body_bytes: int, body_timeout_s: float):
        self.app, self.max_body_bytes, self.body_timeout_s = app, max_body_bytes, body_timeout_s

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_body_bytes:  # refused before reading a byte of it
            await JSONResponse(body_too_large(self.max_body_bytes), status_code=413)(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11 on
                # Connection: close makes uvicorn drop the connection once this is sent; the rest of the
                # body is never read.
                await JSONResponse(body_timeout(self.body_timeout_s), status_code=408,
                                   headers={"Connection": "close"})(scope, receive, send)
                return
            if message["type"] == "http.disconnect":
                return  # the client left before its body was complete: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await JSONResponse(body_too_large(self.max_body_bytes), status_code=413,
                                   headers={"Connection": "close"})(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: http.disconnect, as the server reports it

        await self.app(scope, replay, send)
