"""Every catalogue service, from its documented answers (exporter/catalogue/answers/), served
under `/catalogue/<type>`, so `base_url("catalogue/<type>")` is its host. A new catalogue
entry needs nothing here: its answers file is its fake."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import urllib.parse
from typing import Any

from aiohttp import web

from exporter.demo.server import FakeServer
from exporter.providers import CATALOGUE
from exporter.providers.catalogue import answers_of


def install(server: FakeServer) -> None:
    server.route("*", "/catalogue/{service}/{tail:.*}", CatalogueFake(server).answer)


class CatalogueFake:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        # Login tokens handed out by catalogue services: token -> (service, key).
        self.tokens: dict[str, tuple[str, str]] = {}

    async def answer(self, request: web.Request) -> web.StreamResponse:
        service = request.match_info["service"]
        answers = catalogue_answers(service)
        if answers is None:
            raise web.HTTPNotFound()
        provider = f"catalogue/{service}"
        body = await request.read()
        key = self._key_anywhere(provider, request, body)
        override = await self.server.seen(request, provider, key)
        if override is not None:
            return override
        if self.server.account(provider, key) is None:
            return documented_answer(unknown_key_answer(answers))
        login = answers.get("login")
        if login is not None and "/" + request.match_info["tail"] == login["path"]:
            serial = f"{len(self.tokens)}-{self.server.random.getrandbits(32):08x}"
            token = f"sim-{service}-token-{serial}"
            self.tokens[token] = (service, key)
            return documented_answer(login, token)
        return documented_answer(answers["success"])

    def _key_anywhere(self, provider: str, request: web.Request, body: bytes) -> str:
        """The key of a known account, or of a token it was given, wherever it was sent: the
        path, the query, a header, Basic auth or the body. The fake does not care where; the
        tests of each entry check the request it makes."""
        service = provider.removeprefix("catalogue/")
        places = [urllib.parse.unquote_plus(request.path_qs), body.decode(errors="replace")]
        places.append(urllib.parse.unquote_plus(places[-1]))
        for value in request.headers.values():
            places.append(value)
            scheme, _, encoded = value.partition(" ")
            if scheme.lower() == "basic":
                with contextlib.suppress(ValueError, UnicodeDecodeError):
                    places.append(base64.b64decode(encoded.strip()).decode())
        text = "\n".join(places)
        for key in self.server.accounts.get(provider, {}):
            if key in text:
                return key
        for token, (owner, key) in self.tokens.items():
            if owner == service and token in text:
                return key
        return ""


@functools.cache
def catalogue_answers(service: str) -> dict[str, Any] | None:
    if service not in CATALOGUE:
        return None
    return answers_of(service)


def unknown_key_answer(answers: dict[str, Any]) -> dict[str, Any]:
    """What the service answers a key it does not know: its first documented `auth` error."""
    for error in answers["errors"]:
        if error["reason"] == "auth":
            found: dict[str, Any] = error
            return found
    return {"status": 401, "text": "Unauthorized"}


def documented_answer(answer: dict[str, Any], token: str = "") -> web.Response:
    """A documented answer: `{status, json}` or `{status, text}`; "{token}" strings in the JSON
    become the token handed out."""
    status = int(answer["status"])
    if "text" in answer:
        return web.Response(status=status, text=str(answer["text"]), content_type="text/plain")
    body = json.dumps(answer["json"]).replace('"{token}"', json.dumps(token))
    return web.Response(status=status, text=body, content_type="application/json")
