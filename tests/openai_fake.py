"""A local fake of an OpenAI-compatible endpoint (``POST /v1/chat/completions``) on 127.0.0.1.

The real ``AsyncOpenAI`` client is pointed at it. It answers structured-output requests with what a
test's ``brain`` returns (by default a small deterministic stand-in for a model), and can answer 429,
500, never (a hung request, for timeouts) or with malformed JSON. It records every request.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

Brain = Callable[[str, dict[str, Any]], dict[str, Any] | str]
"""(schema name, the request's data block) -> the answer object, or a raw string to send as is."""

SUBTLE = ("so I get to explain it again", "third time", "still waiting", "any day now")


def stand_in(schema: str, data: dict[str, Any]) -> dict[str, Any]:
    """A deterministic stand-in for a model: it notices a few kinds of subtle frustration, answers from
    the first passage, and summarises a handoff from the conversation it is given."""
    if schema == "TurnOpinion":
        text = data["customer_message"]
        signals = [{"kind": "frustration", "severity": "high", "evidence": phrase}
                   for phrase in SUBTLE if phrase.lower() in text.lower()][:1]
        passages = data.get("passages") or []
        if not passages:
            return {"signals": signals, "answer": "", "citations": [], "known": False}
        first = passages[0]
        sentence = re.split(r"(?<=[.!?])\s", first["text"].strip())[0]
        return {"signals": signals, "answer": f"In short: {sentence}", "citations": [first["id"]], "known": True}
    lines = data.get("conversation") or []
    return {"goal": "Get the duplicate charge refunded", "timeline": lines[:2], "tried": ["asked the bot"],
            "next_step": "Check the invoices and refund the duplicate", "draft":
            "Thanks for flagging this. I'm checking your invoices now and will confirm the refund today."}


@dataclass
class FakeOpenAI:
    brain: Brain = stand_in
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: list[int | str] = field(default_factory=list)
    """Statuses to answer the next requests with, in order; ``"hang"`` never answers."""
    server: TestServer | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return str(self.server.make_url("/v1"))

    async def close(self) -> None:
        self._release.set()
        if self.server is not None:
            await self.server.close()

    def data_of(self, request: dict[str, Any]) -> dict[str, Any]:
        user = request["messages"][-1]["content"]
        return dict(json.loads(user.split("<data>", 1)[1].rsplit("</data>", 1)[0]))

    async def _complete(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if request.headers.get("Authorization") != "Bearer test-key":
            return web.json_response({"error": {"message": "bad key", "type": "invalid_request_error"}}, status=401)
        if self.failures:
            failure = self.failures.pop(0)
            if failure == "hang":
                await self._release.wait()
                return web.json_response({}, status=500)
            message = "Rate limit reached" if failure == 429 else "The server had an error"
            return web.json_response({"error": {"message": message, "type": "server_error"}}, status=int(failure),
                                     headers={"retry-after-ms": "10"} if failure == 429 else None)
        schema = body["response_format"]["json_schema"]["name"]
        answer = self.brain(schema, self.data_of(body))
        content = answer if isinstance(answer, str) else json.dumps(answer)
        prompt_tokens = sum(len(m["content"]) for m in body["messages"]) // 4
        return web.json_response({
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"], "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content, "refusal": None}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(content) // 4,
                      "total_tokens": prompt_tokens + len(content) // 4}})

    def of(self, schema: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["response_format"]["json_schema"]["name"] == schema]
